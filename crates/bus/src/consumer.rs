//! Idempotent consumers: durable JetStream pull consumers with explicit acknowledgement.
//!
//! A handler applies its effect and calls [`mark_processed`] in one transaction; when the
//! event was already handled, `mark_processed` says so and the handler does nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use db::schema::processed_events;

use crate::envelope::Incoming;
use crate::subjects::{Family, Subjects};

/// Records that `consumer` handled `event_id`. Returns `false` when it already had: the
/// caller must then skip its effect. Call it in the transaction of the effect.
pub async fn mark_processed(
    conn: &mut AsyncPgConnection,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, diesel::result::Error> {
    let inserted = diesel::insert_into(processed_events::table)
        .values((
            processed_events::consumer.eq(consumer),
            processed_events::event_id.eq(event_id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// What went wrong in a handler.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth another try (database down, LiveKit slow): the event is redelivered later.
    #[error("transient: {0}")]
    Retry(anyhow::Error),
    /// Will never succeed (undecodable payload): straight to the dead-letter subject.
    #[error("permanent: {0}")]
    Permanent(anyhow::Error),
}

impl From<diesel::result::Error> for HandlerError {
    fn from(e: diesel::result::Error) -> Self {
        HandlerError::Retry(e.into())
    }
}

impl From<db::DbError> for HandlerError {
    fn from(e: db::DbError) -> Self {
        HandlerError::Retry(e.into())
    }
}

/// An event handler.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, event: Incoming) -> BoxFuture<'_, Result<(), HandlerError>>;
}

/// One durable consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable name, also the `consumer` of `processed_events`.
    pub name: String,
    pub family: Family,
    /// Events handled; others are acknowledged and skipped. Empty = all of the family.
    pub event_types: Vec<String>,
    pub max_deliver: i64,
    pub ack_wait: Duration,
    /// Events handled at once by one replica.
    pub concurrency: usize,
}

impl ConsumerSpec {
    pub fn new(name: &str, family: Family) -> Self {
        ConsumerSpec {
            name: name.to_owned(),
            family,
            event_types: Vec::new(),
            max_deliver: 10,
            ack_wait: Duration::from_secs(30),
            concurrency: 16,
        }
    }
}

/// Creates the durable consumer (if absent) and processes its messages until `shutdown`.
/// Replicas with the same spec share the work (one durable pull consumer).
pub async fn spawn_consumer(
    js: jetstream::Context,
    subjects: Subjects,
    spec: ConsumerSpec,
    handler: Arc<dyn Handler>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let stream = js
        .get_stream(subjects.stream(spec.family))
        .await
        .map_err(|e| anyhow::anyhow!("stream {}: {e}", subjects.stream(spec.family)))?;
    let consumer = stream
        .get_or_create_consumer(
            &spec.name,
            pull::Config {
                durable_name: Some(spec.name.clone()),
                filter_subject: subjects.family_filter(spec.family),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                max_deliver: spec.max_deliver,
                ack_wait: spec.ack_wait,
                max_ack_pending: 1000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("consumer {}: {e}", spec.name))?;
    let handle = tokio::spawn(async move {
        loop {
            let messages = match consumer.messages().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(consumer = %spec.name, error = %e, "cannot pull messages; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            };
            let work = messages.for_each_concurrent(spec.concurrency, |message| {
                let handler = handler.clone();
                let spec = &spec;
                let subjects = &subjects;
                let js = &js;
                async move {
                    match message {
                        Ok(message) => process(js, subjects, spec, handler.as_ref(), message).await,
                        Err(e) => tracing::warn!(consumer = %spec.name, error = %e, "message stream error"),
                    }
                }
            });
            tokio::select! {
                _ = work => {
                    // the stream ended (connection lost): pull again
                }
                _ = shutdown.changed() => return,
            }
        }
    });
    Ok(handle)
}

/// How long JetStream waits before delivering a failed event again: doubling from 250 ms,
/// at most 30 s. A transient failure is usually the database or LiveKit being away for a
/// while (a PostgreSQL restart or failover): the default `max_deliver` of 10 then spans
/// about 90 s before the event is dead-lettered. (A linear 250 ms step gave up after 11 s,
/// which the fault suite saw dead-letter LiveKit joins during a 13 s PostgreSQL restart.)
pub fn redelivery_delay(delivered: i64) -> Duration {
    let doublings = delivered.clamp(1, 8) as u32 - 1;
    Duration::from_millis(250 * 2u64.pow(doublings)).min(Duration::from_secs(30))
}

async fn process(
    js: &jetstream::Context,
    subjects: &Subjects,
    spec: &ConsumerSpec,
    handler: &dyn Handler,
    message: jetstream::Message,
) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let subject = message.subject.to_string();
    let event_type = subjects.event_type(&subject).to_owned();
    if !spec.event_types.is_empty() && !spec.event_types.iter().any(|t| t == &event_type) {
        let _ = message.ack().await;
        return;
    }
    let headers: HashMap<String, String> = message
        .headers
        .as_ref()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| {
                    std::iter::Iterator::next(&mut v.iter()).map(|v| (k.to_string(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    let span = tracing::info_span!("event", consumer = %spec.name, event.type = %event_type, event.id = tracing::field::Empty);
    crate::trace::set_parent(&span, &headers);
    let outcome = match Incoming::decode(&subject, &message.payload, delivered) {
        Ok(incoming) => {
            span.record("event.id", tracing::field::display(incoming.id));
            handler.handle(incoming).instrument(span.clone()).await
        }
        Err(e) => Err(HandlerError::Permanent(e.into())),
    };
    let _enter = span.enter();
    match outcome {
        Ok(()) => {
            metrics::counter!("events_handled_total", "consumer" => spec.name.clone(), "outcome" => "ok").increment(1);
            let _ = message.ack().await;
        }
        Err(HandlerError::Retry(e)) if delivered < spec.max_deliver => {
            tracing::warn!(error = %e, delivered, "event handler failed; redelivery later");
            metrics::counter!("events_handled_total", "consumer" => spec.name.clone(), "outcome" => "retry").increment(1);
            let _ = message
                .ack_with(AckKind::Nak(Some(redelivery_delay(delivered))))
                .await;
        }
        Err(e) => {
            tracing::error!(error = %e, delivered, "event sent to the dead-letter subject");
            metrics::counter!("events_dead_lettered_total", "consumer" => spec.name.clone())
                .increment(1);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Ipelya-Original-Subject", subject.as_str());
            headers.insert("Ipelya-Error", e.to_string().as_str());
            let _ = js
                .publish_with_headers(
                    subjects.dead_letter(&spec.name),
                    headers,
                    message.payload.clone(),
                )
                .await;
            let _ = message.ack_with(AckKind::Term).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redeliveries_back_off_to_outlast_a_database_restart() {
        assert_eq!(redelivery_delay(1), Duration::from_millis(250));
        assert_eq!(redelivery_delay(2), Duration::from_millis(500));
        assert_eq!(redelivery_delay(8), Duration::from_secs(30));
        assert_eq!(redelivery_delay(i64::MAX), Duration::from_secs(30));
        // The default max_deliver: nine waits between its ten deliveries.
        let spanned: Duration = (1..ConsumerSpec::new("c", Family::Session).max_deliver)
            .map(redelivery_delay)
            .sum();
        assert!(spanned >= Duration::from_secs(60), "{spanned:?}");
    }
}
