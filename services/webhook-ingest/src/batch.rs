//! Group commit: webhooks that arrive while a transaction is being written wait for the
//! next one and are written together (one insert per table, one commit), so a flood costs
//! one disk flush per batch instead of one per webhook. A request is answered only after
//! its batch committed, so an acknowledged webhook is never lost. Under light load a batch
//! holds one webhook and nothing waits.

use std::collections::HashSet;
use std::sync::Arc;

use bus::Event;
use chrono::{DateTime, Utc};
use db::models::NewWebhookEvent;
use db::queries::webhooks::{self, ConnectionFact};
use diesel_async::{AsyncConnection, RunQueryDsl};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Webhooks written in one transaction at most.
const MAX_BATCH: usize = 256;
/// Writers running at once (each holds one connection while it writes).
const WRITERS: usize = 4;

/// What a stored webhook does to LiveKit's record of connections.
#[derive(Debug, Clone)]
pub(crate) enum Fact {
    None,
    Joined {
        sid: String,
        room: String,
        identity: String,
    },
    Left {
        sid: String,
        room: String,
        identity: String,
        reason: Option<String>,
    },
    RoomFinished {
        room: String,
    },
}

/// A verified, parsed webhook ready to store.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub id: String,
    pub event: String,
    pub room: Option<String>,
    pub participant_sid: Option<String>,
    pub identity: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub fact: Fact,
    pub outgoing: Event,
}

struct Job {
    webhook: Prepared,
    /// `Ok(true)` stored, `Ok(false)` a duplicate.
    reply: oneshot::Sender<Result<bool, String>>,
}

/// The handle requests submit to.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<Job>,
}

impl Batcher {
    pub fn spawn(pool: db::Pool, subjects: bus::Subjects) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(MAX_BATCH * WRITERS * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WRITERS {
            let rx = rx.clone();
            let pool = pool.clone();
            let subjects = subjects.clone();
            tokio::spawn(async move {
                loop {
                    let mut jobs = Vec::with_capacity(MAX_BATCH);
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(job) => jobs.push(job),
                            None => return,
                        }
                        while jobs.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(job) => jobs.push(job),
                                Err(_) => break,
                            }
                        }
                    }
                    metrics::histogram!("webhook_batch_size").record(jobs.len() as f64);
                    write(&pool, &subjects, jobs).await;
                }
            });
        }
        Batcher { tx }
    }

    /// Stores one webhook with whatever batch it joins; `Ok(false)` for a duplicate.
    pub async fn submit(&self, webhook: Prepared) -> Result<bool, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { webhook, reply })
            .await
            .map_err(|_| "webhook writer stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "webhook writer stopped".to_owned())?
    }
}

async fn write(pool: &db::Pool, subjects: &bus::Subjects, jobs: Vec<Job>) {
    let result = store(pool, subjects, jobs.iter().map(|j| &j.webhook).collect()).await;
    match result {
        Ok(stored) => {
            for job in jobs {
                let _ = job.reply.send(Ok(stored.claim(&job.webhook.id)));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, batch = jobs.len(), "storing webhooks failed");
            for job in jobs {
                let _ = job.reply.send(Err(e.to_string()));
            }
        }
    }
}

/// Writes a batch in one transaction; returns the ids newly stored, each once.
async fn store(
    pool: &db::Pool,
    subjects: &bus::Subjects,
    batch: Vec<&Prepared>,
) -> Result<Claims, db::DbError> {
    // One row per id (LiveKit may deliver a retry while the first is in the same batch).
    let mut seen = HashSet::new();
    let unique: Vec<&Prepared> = batch
        .into_iter()
        .filter(|w| seen.insert(w.id.as_str()))
        .collect();
    let mut conn = db::pool::conn(pool).await?;
    let stored: Vec<String> = conn
        .transaction::<Vec<String>, db::DbError, _>(async |c| {
            let rows: Vec<NewWebhookEvent<'_>> = unique
                .iter()
                .map(|w| NewWebhookEvent {
                    id: &w.id,
                    event: &w.event,
                    room_name: w.room.as_deref(),
                    participant_sid: w.participant_sid.as_deref(),
                    identity: w.identity.as_deref(),
                    occurred_at: w.occurred_at,
                    payload: w.payload.clone(),
                })
                .collect();
            let stored: Vec<String> = diesel::insert_into(db::schema::webhook_events::table)
                .values(&rows)
                .on_conflict_do_nothing()
                .returning(db::schema::webhook_events::id)
                .get_results(c)
                .await?;
            let new: HashSet<&str> = stored.iter().map(String::as_str).collect();
            let mut events = Vec::with_capacity(stored.len());
            for w in unique.iter().filter(|w| new.contains(w.id.as_str())) {
                match &w.fact {
                    Fact::Joined {
                        sid,
                        room,
                        identity,
                    } => {
                        webhooks::record_connection(
                            c,
                            sid,
                            room,
                            identity,
                            ConnectionFact::Joined { at: w.occurred_at },
                        )
                        .await?;
                    }
                    Fact::Left {
                        sid,
                        room,
                        identity,
                        reason,
                    } => {
                        let fact = ConnectionFact::Left {
                            at: w.occurred_at,
                            reason: reason.as_deref(),
                        };
                        webhooks::record_connection(c, sid, room, identity, fact).await?;
                    }
                    Fact::RoomFinished { room } => {
                        webhooks::close_room(c, room, w.occurred_at, "ROOM_FINISHED").await?;
                    }
                    Fact::None => {}
                }
                events.push(w.outgoing.clone());
            }
            bus::outbox::enqueue_all(c, subjects, &events).await?;
            Ok(stored)
        })
        .await?;
    Ok(Claims(std::sync::Mutex::new(stored.into_iter().collect())))
}

/// The ids stored by a batch; each is handed out once, to the first request that asks.
struct Claims(std::sync::Mutex<HashSet<String>>);

impl Claims {
    fn claim(&self, id: &str) -> bool {
        self.0.lock().map(|mut s| s.remove(id)).unwrap_or(false)
    }
}
