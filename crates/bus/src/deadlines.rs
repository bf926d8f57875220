//! Durable deadlines: host grace, call ringing, no-show, max durations, the orphan sweep.
//!
//! A deadline is a row with a `due_at`. The worker of the owning service claims due rows
//! with `FOR UPDATE SKIP LOCKED` (so replicas share them and none fires twice), applies the
//! effect, marks the row fired and writes any outbox event, all in one transaction. It
//! sleeps until the next `due_at` (at most a second) and is woken by `NOTIFY deadlines`
//! when a deadline is inserted. A deadline made moot is cancelled in the transaction of the
//! event that made it so; an effect the state machine refuses marks it fired with no effect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use db::Pool;
use db::models::{DeadlineRow, NewDeadline};
use db::schema::deadlines;

/// Schedules a deadline. At most one pending deadline of a kind exists per subject: when
/// one is already pending, it is left as it is and `false` is returned.
pub async fn schedule(
    conn: &mut AsyncPgConnection,
    kind: &str,
    subject_id: Uuid,
    due_at: DateTime<Utc>,
    payload: serde_json::Value,
) -> Result<bool, diesel::result::Error> {
    let inserted = diesel::insert_into(deadlines::table)
        .values(NewDeadline {
            id: Uuid::now_v7(),
            kind: kind.to_owned(),
            subject_id,
            due_at,
            payload,
        })
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        crate::wake::DEADLINES.notify_waiters();
    }
    Ok(inserted == 1)
}

/// Cancels the pending deadline of a kind for a subject; returns how many were cancelled.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    kind: &str,
    subject_id: Uuid,
) -> Result<usize, diesel::result::Error> {
    diesel::update(
        deadlines::table
            .filter(deadlines::kind.eq(kind))
            .filter(deadlines::subject_id.eq(subject_id))
            .filter(deadlines::fired_at.is_null())
            .filter(deadlines::cancelled_at.is_null()),
    )
    .set(deadlines::cancelled_at.eq(Utc::now()))
    .execute(conn)
    .await
}

/// Cancels every pending deadline of a subject (a session that ended).
pub async fn cancel_all(
    conn: &mut AsyncPgConnection,
    subject_id: Uuid,
) -> Result<usize, diesel::result::Error> {
    diesel::update(
        deadlines::table
            .filter(deadlines::subject_id.eq(subject_id))
            .filter(deadlines::fired_at.is_null())
            .filter(deadlines::cancelled_at.is_null()),
    )
    .set(deadlines::cancelled_at.eq(Utc::now()))
    .execute(conn)
    .await
}

/// The pending deadline of a kind for a subject, if any.
pub async fn pending(
    conn: &mut AsyncPgConnection,
    kind: &str,
    subject_id: Uuid,
) -> Result<Option<DeadlineRow>, diesel::result::Error> {
    deadlines::table
        .filter(deadlines::kind.eq(kind))
        .filter(deadlines::subject_id.eq(subject_id))
        .filter(deadlines::fired_at.is_null())
        .filter(deadlines::cancelled_at.is_null())
        .select(DeadlineRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// What a service does when one of its deadlines is due. It runs inside the transaction
/// that marks the deadline fired; the returned text is kept as the deadline's outcome
/// (`"ended"`, `"moot"`, ...). An error rolls everything back and the deadline is retried.
pub trait DeadlineHandler: Send + Sync + 'static {
    fn fire<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        deadline: &'a DeadlineRow,
    ) -> BoxFuture<'a, anyhow::Result<String>>;
}

/// Claims and fires one due deadline of the given kinds; `Ok(None)` when none is due.
pub async fn fire_one(
    pool: &Pool,
    kinds: &[String],
    handler: &dyn DeadlineHandler,
) -> anyhow::Result<Option<(DeadlineRow, String)>> {
    fire_one_except(pool, kinds, &[], handler)
        .await
        .map_err(|(_, e)| e)
}

/// As [`fire_one`], leaving the `skip` rows alone (deadlines whose effect failed lately and
/// wait for their retry); an error names the deadline that failed, when one was claimed.
async fn fire_one_except(
    pool: &Pool,
    kinds: &[String],
    skip: &[Uuid],
    handler: &dyn DeadlineHandler,
) -> Result<Option<(DeadlineRow, String)>, (Option<Uuid>, anyhow::Error)> {
    let mut conn = db::pool::conn(pool).await.map_err(|e| (None, e.into()))?;
    let mut claimed: Option<Uuid> = None;
    let result = conn
        .transaction::<Option<(DeadlineRow, String)>, anyhow::Error, _>(async |c| {
            let row: Option<DeadlineRow> = deadlines::table
                .filter(deadlines::id.ne_all(skip))
                .filter(deadlines::kind.eq_any(kinds))
                .filter(deadlines::fired_at.is_null())
                .filter(deadlines::cancelled_at.is_null())
                .filter(deadlines::due_at.le(Utc::now()))
                .order(deadlines::due_at.asc())
                .limit(1)
                .for_update()
                .skip_locked()
                .select(DeadlineRow::as_select())
                .first(c)
                .await
                .optional()?;
            let Some(row) = row else { return Ok(None) };
            claimed = Some(row.id);
            let outcome = handler.fire(c, &row).await?;
            // The effect may have cancelled its subject's deadlines, this one included: the
            // one that fired is marked fired, not cancelled.
            diesel::update(deadlines::table.find(row.id))
                .set((
                    deadlines::fired_at.eq(Utc::now()),
                    deadlines::cancelled_at.eq(None::<DateTime<Utc>>),
                    deadlines::outcome.eq(&outcome),
                ))
                .execute(c)
                .await?;
            Ok(Some((row, outcome)))
        })
        .await;
    match result {
        Ok(Some((row, outcome))) => {
            let late_ms = (Utc::now() - row.due_at).num_milliseconds();
            tracing::info!(deadline.kind = %row.kind, subject.id = %row.subject_id, outcome = %outcome, late_ms, "deadline fired");
            metrics::counter!("deadlines_fired_total", "kind" => row.kind.clone(), "outcome" => outcome.clone()).increment(1);
            metrics::histogram!("deadline_lateness_seconds").record(late_ms as f64 / 1000.0);
            Ok(Some((row, outcome)))
        }
        Ok(None) => Ok(None),
        Err(e) => Err((claimed, e)),
    }
}

async fn next_due_except(
    pool: &Pool,
    kinds: &[String],
    skip: &[Uuid],
) -> anyhow::Result<Option<DateTime<Utc>>> {
    let mut conn = db::pool::conn(pool).await?;
    Ok(deadlines::table
        .filter(deadlines::id.ne_all(skip))
        .filter(deadlines::kind.eq_any(kinds))
        .filter(deadlines::fired_at.is_null())
        .filter(deadlines::cancelled_at.is_null())
        .select(diesel::dsl::min(deadlines::due_at))
        .first::<Option<DateTime<Utc>>>(&mut conn)
        .await?)
}

/// Pending deadlines (for the `deadlines_pending` gauge).
pub async fn pending_count(pool: &Pool) -> anyhow::Result<i64> {
    let mut conn = db::pool::conn(pool).await?;
    Ok(deadlines::table
        .filter(deadlines::fired_at.is_null())
        .filter(deadlines::cancelled_at.is_null())
        .count()
        .get_result(&mut conn)
        .await?)
}

/// The longest the worker sleeps without looking (deadlines other processes wrote are
/// found by looking; a local write wakes the worker).
const MAX_SLEEP: Duration = Duration::from_millis(1000);

/// How often the `deadlines_pending` gauge is refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

/// The shortest pause when due rows are held by another replica or a round failed.
const MIN_PAUSE: Duration = Duration::from_millis(100);

/// Starts the worker for `kinds`.
pub fn spawn_worker(
    pool: Pool,
    db_url: String,
    kinds: Vec<String>,
    handler: Arc<dyn DeadlineHandler>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let wake = Arc::new(Notify::new());
    crate::listen::spawn_listener(db_url, "deadlines", wake.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut backoff: HashMap<Uuid, (tokio::time::Instant, u32)> = HashMap::new();
        // Looks left after a local write (its transaction commits a moment later).
        let mut after_write: usize = crate::wake::AFTER_WRITE.len();
        let mut last_gauge = tokio::time::Instant::now() - GAUGE_EVERY;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut failed = false;
            let mut fired_any = false;
            let now = tokio::time::Instant::now();
            backoff.retain(|_, (until, _)| *until > now);
            let skip: Vec<Uuid> = backoff.keys().copied().collect();
            loop {
                match fire_one_except(&pool, &kinds, &skip, handler.as_ref()).await {
                    Ok(Some((row, _))) => {
                        backoff.remove(&row.id);
                        fired_any = true;
                    }
                    Ok(None) => break,
                    Err((claimed, e)) => {
                        failed = true;
                        let Some(id) = claimed else {
                            tracing::warn!(error = %e, "deadlines unavailable; retrying");
                            break;
                        };
                        // Back off this deadline only: the others keep firing on time.
                        let attempts = backoff.get(&id).map_or(1, |(_, n)| n + 1);
                        let delay = Duration::from_millis(250 * 2u64.pow(attempts.min(7)));
                        tracing::warn!(error = %e, deadline.id = %id, attempts, retry_in_ms = delay.as_millis() as u64, "deadline effect failed; retrying later");
                        backoff.insert(id, (tokio::time::Instant::now() + delay, attempts));
                        break;
                    }
                }
            }
            // A count over every pending row: at most once a second, not once a round
            // (rounds come as often as deadlines are written).
            if last_gauge.elapsed() >= GAUGE_EVERY {
                last_gauge = tokio::time::Instant::now();
                if let Ok(n) = pending_count(&pool).await {
                    metrics::gauge!("deadlines_pending").set(n as f64);
                }
            }
            let skip: Vec<Uuid> = backoff.keys().copied().collect();
            let next_retry = backoff.values().map(|(until, _)| *until).min();
            let mut sleep = match next_due_except(&pool, &kinds, &skip).await {
                Ok(Some(due)) => (due - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_SLEEP),
                Ok(None) => MAX_SLEEP,
                Err(_) => Duration::from_millis(500),
            };
            if let Some(retry) = next_retry {
                sleep = sleep.min(retry.saturating_duration_since(tokio::time::Instant::now()));
            }
            if sleep.is_zero() && !fired_any && !failed {
                // Due rows exist but another replica holds them while it fires them: look
                // again shortly instead of spinning.
                sleep = MIN_PAUSE;
            }
            if failed && sleep.is_zero() {
                sleep = MIN_PAUSE;
            }
            if let Some(pause) = crate::wake::AFTER_WRITE.get(after_write) {
                sleep = sleep.min(*pause);
                after_write += 1;
            }
            tokio::select! {
                _ = crate::wake::DEADLINES.notified() => after_write = 0,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// Keeps one periodic deadline (`kind` for `subject`, due `every` from when it is
/// scheduled) pending: every replica runs this, and the one pending deadline per kind and
/// subject makes one replica fire each round. The handler of `kind` does the periodic work
/// (a reconciliation, an alert check) when it fires. Stops with `shutdown`.
pub fn keep_scheduled(
    pool: Pool,
    kind: &'static str,
    subject: Uuid,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let scheduled = async {
                let mut conn = db::pool::conn(&pool).await?;
                let due = Utc::now() + chrono::Duration::from_std(every)?;
                schedule(&mut conn, kind, subject, due, serde_json::json!({})).await?;
                anyhow::Ok(())
            };
            if let Err(e) = scheduled.await {
                tracing::warn!(deadline.kind = kind, error = %e, "could not schedule the periodic deadline");
            }
            tokio::select! {
                _ = tokio::time::sleep(every.min(Duration::from_secs(30))) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}
