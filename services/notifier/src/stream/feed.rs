//! From NATS to the hub: one ordered, ephemeral JetStream consumer per family (`call`,
//! `session`) on every replica, starting at new messages. Not a queue group: each replica
//! must see every event, since any replica may hold the recipient's connection. The
//! ordered consumer recreates itself from the last stream sequence after a NATS reconnect,
//! so a reconnect loses nothing; if its stream ends, this task recreates it from there too.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull};
use bus::{Family, Incoming, Subjects};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::audience::Audience;
use super::encode::{self, Payload, Skip, user};
use super::hub::Hub;

/// How long the first event of a session may wait for its audience to be read.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Subscribes to `family` now (events published after this returns are seen) and feeds the
/// hub until `shutdown`.
pub async fn spawn(
    js: &jetstream::Context,
    subjects: Subjects,
    family: Family,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let stream = js
        .get_stream(subjects.stream(family))
        .await
        .map_err(|e| anyhow::anyhow!("stream {}: {e}", subjects.stream(family)))?;
    let filter = subjects.family_filter(family);
    let config = move |deliver_policy| pull::OrderedConfig {
        filter_subject: filter.clone(),
        deliver_policy,
        ..Default::default()
    };
    let first = stream
        .create_consumer(config(DeliverPolicy::New))
        .await
        .map_err(|e| anyhow::anyhow!("ordered consumer on {}: {e}", subjects.stream(family)))?;
    Ok(tokio::spawn(async move {
        let mut consumer = Some(first);
        let mut last_seq = 0u64;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let c = match consumer.take() {
                Some(c) => c,
                None => {
                    let policy = if last_seq == 0 {
                        DeliverPolicy::New
                    } else {
                        DeliverPolicy::ByStartSequence {
                            start_sequence: last_seq + 1,
                        }
                    };
                    match stream.create_consumer(config(policy)).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(family = family.as_str(), error = %e, "cannot recreate the event stream's consumer; retrying");
                            if pause(&mut shutdown).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let mut messages = match c.messages().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(family = family.as_str(), error = %e, "cannot pull the event stream's messages; retrying");
                    if pause(&mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                tokio::select! {
                    m = messages.next() => match m {
                        Some(Ok(m)) => {
                            if let Ok(info) = m.info() {
                                last_seq = info.stream_sequence;
                            }
                            dispatch(&hub, &subjects, &m.subject, &m.payload).await;
                        }
                        // The ordered consumer recovers by itself (it recreates the consumer).
                        Some(Err(e)) => tracing::warn!(family = family.as_str(), error = %e, "event stream consumer error"),
                        None => break,
                    },
                    _ = shutdown.changed() => return,
                }
            }
        }
    }))
}

/// Waits a second; `true` when the service is stopping meanwhile.
async fn pause(shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => false,
        _ = shutdown.changed() => true,
    }
}

/// Decodes one NATS message and sends it to its recipients on this replica. A message that
/// does not decode is counted and skipped: it must not stop the stream.
pub async fn dispatch(hub: &Hub, subjects: &Subjects, subject: &str, body: &[u8]) {
    let event_type = subjects.event_type(subject);
    let incoming = match Incoming::decode(subject, body, 1) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(subject, error = %e, "undecodable message on the event stream skipped");
            skipped("undecodable");
            return;
        }
    };
    let payload = match Payload::decode(event_type, &incoming) {
        Ok(p) => p,
        Err(e @ Skip::Undecodable { .. }) => {
            tracing::warn!(event.id = %incoming.id, error = %e, "event with an undecodable payload skipped");
            skipped("undecodable");
            return;
        }
        Err(Skip::Unrouted(_)) => {
            skipped("unrouted");
            return;
        }
    };
    let frame = encode::frame(event_type, &incoming, &payload);
    if let Payload::Call(c) = &payload {
        hub.deliver(
            pair(user(&c.caller_id), user(&c.callee_id)),
            incoming.id,
            &frame,
        );
        return;
    }
    let Some(session) = payload.session_id() else {
        tracing::warn!(event.id = %incoming.id, event.type = event_type, "session event without a valid session id skipped");
        skipped("undecodable");
        return;
    };
    // Read outside the lock (an `.await`); only this task adds sessions, so it is still
    // absent when inserted below.
    let loaded = if super::lock(&hub.audiences).contains(session) {
        None
    } else {
        Some(load(hub, session, &payload).await)
    };
    let mut audiences = super::lock(&hub.audiences);
    let mut keep = true;
    if let Some((audience, cacheable)) = loaded {
        audiences.insert(session, audience);
        keep = cacheable;
    }
    let Some(audience) = audiences.get_mut(session) else {
        return;
    };
    match &payload {
        Payload::Call(_) => {}
        Payload::Session(p) => {
            if audience.host.is_none() {
                audience.host = user(&p.creator_id);
            }
            hub.deliver(audience.members(), incoming.id, &frame);
            if p.status == "ended" || event_type == "session.ended" {
                keep = false;
            }
        }
        Payload::Participant(p) => {
            let who = user(&p.user_id);
            let joined = event_type == "session.participant_joined";
            if let (Some(u), true) = (who, joined) {
                audience.participants.insert(u);
            }
            hub.deliver(audience.members(), incoming.id, &frame);
            if let (Some(u), false) = (who, joined) {
                audience.participants.remove(&u);
            }
        }
        Payload::Guest(p) => {
            hub.deliver(pair(user(&p.user_id), audience.host), incoming.id, &frame);
        }
        Payload::Message(_) => {
            hub.deliver(audience.members(), incoming.id, &frame);
        }
        Payload::Gift(p) => {
            if audience.host.is_none() {
                audience.host = user(&p.recipient_id);
            }
            hub.deliver(audience.members(), incoming.id, &frame);
        }
    }
    if !keep {
        audiences.remove(session);
    }
}

/// Two users, each once.
fn pair(a: Option<Uuid>, b: Option<Uuid>) -> impl Iterator<Item = Uuid> {
    a.into_iter().chain(b.filter(|b| Some(*b) != a))
}

fn skipped(reason: &'static str) {
    metrics::counter!("sse_events_skipped_total", "reason" => reason).increment(1);
}

/// The session's audience from the database, and whether to keep it (not for an ended or
/// unknown session, nor after a failed read: the next event reads again). Without the
/// database, the event's own users are the audience.
async fn load(hub: &Hub, session: Uuid, payload: &Payload) -> (Audience, bool) {
    let read = tokio::time::timeout(LOAD_TIMEOUT, async {
        let mut conn = db::pool::conn(&hub.pool).await?;
        db::queries::stream::session_audience(&mut conn, session).await
    })
    .await;
    match read {
        Ok(Ok(Some(a))) => {
            let cacheable = a.status != "ended";
            (Audience::new(Some(a.creator_id), a.participants), cacheable)
        }
        Ok(Ok(None)) => (fallback(payload), false),
        Ok(Err(e)) => {
            tracing::warn!(session.id = %session, error = %e, "cannot read the session's audience; only the event's users get it");
            (fallback(payload), false)
        }
        Err(_) => {
            tracing::warn!(session.id = %session, timeout_ms = LOAD_TIMEOUT.as_millis() as u64, "reading the session's audience timed out; only the event's users get it");
            (fallback(payload), false)
        }
    }
}

fn fallback(payload: &Payload) -> Audience {
    match payload {
        Payload::Session(p) => Audience::new(user(&p.creator_id), []),
        Payload::Gift(p) => Audience::new(user(&p.recipient_id), []),
        _ => Audience::new(None, []),
    }
}
