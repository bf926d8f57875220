//! The outbox relay: publishes outbox rows to JetStream in id order and marks them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use db::Pool;
use db::models::OutboxRow;
use db::schema::outbox;

/// `attempts` of a row that can never be published (too large for NATS): it stays in the
/// outbox for operators and is no longer claimed.
pub const PARKED: i32 = 1_000;

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed per transaction.
    pub batch: i64,
    /// Fallback poll for rows written by other processes (a local write wakes the relay).
    pub poll_interval: Duration,
    /// Published rows older than this are pruned.
    pub retention: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch: 256,
            poll_interval: Duration::from_millis(250),
            retention: Duration::from_secs(3600),
        }
    }
}

/// Publishes one batch of unpublished rows; returns how many were published.
///
/// The rows stay locked (`FOR UPDATE SKIP LOCKED`) while they are published, so two relays
/// never publish the same row at once; a relay that dies after publishing and before the
/// commit leaves them unpublished, and the next publish is dropped by JetStream as a
/// duplicate (`Nats-Msg-Id` = event id).
pub async fn relay_batch(
    pool: &Pool,
    js: &jetstream::Context,
    batch: i64,
) -> anyhow::Result<usize> {
    let mut conn = db::pool::conn(pool).await?;
    conn.transaction::<usize, anyhow::Error, _>(async |c| {
        let rows: Vec<OutboxRow> = outbox::table
            .filter(outbox::published_at.is_null())
            .filter(outbox::attempts.lt(PARKED))
            .order(outbox::id.asc())
            .limit(batch)
            .for_update()
            .skip_locked()
            .select(OutboxRow::as_select())
            .load(c)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut acks = Vec::with_capacity(rows.len());
        let mut parked = Vec::new();
        for row in &rows {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", row.id.to_string().as_str());
            if let Ok(extra) =
                serde_json::from_value::<HashMap<String, String>>(row.headers.clone())
            {
                for (k, v) in extra {
                    headers.insert(k.as_str(), v.as_str());
                }
            }
            match js
                .publish_with_headers(row.subject.clone(), headers, row.payload.clone().into())
                .await
            {
                Ok(ack) => acks.push((row.id, ack)),
                // It will never fit: park it (kept, counted, skipped) instead of letting it
                // hold back every event behind it.
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    tracing::error!(event.id = %row.id, subject = %row.subject, bytes = row.payload.len(), "event too large for NATS; parked in the outbox");
                    metrics::counter!("outbox_parked_total").increment(1);
                    parked.push(row.id);
                }
                Err(e) => return Err(anyhow::anyhow!("publishing {}: {e}", row.subject)),
            }
        }
        let mut ids = Vec::with_capacity(acks.len());
        for (id, ack) in acks {
            ack.await
                .map_err(|e| anyhow::anyhow!("no acknowledgement from JetStream: {e}"))?;
            ids.push(id);
        }
        if !parked.is_empty() {
            diesel::update(outbox::table.filter(outbox::id.eq_any(&parked)))
                .set(outbox::attempts.eq(PARKED))
                .execute(c)
                .await?;
        }
        diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)))
            .set(outbox::published_at.eq(Utc::now()))
            .execute(c)
            .await?;
        metrics::counter!("outbox_published_total").increment(ids.len() as u64);
        Ok(rows.len())
    })
    .await
}

/// Rows waiting to be published (the backlog; parked rows are not waiting).
pub async fn backlog(pool: &Pool) -> anyhow::Result<i64> {
    let mut conn = db::pool::conn(pool).await?;
    Ok(outbox::table
        .filter(outbox::published_at.is_null())
        .filter(outbox::attempts.lt(PARKED))
        .count()
        .get_result(&mut conn)
        .await?)
}

/// Publishes until the backlog is empty or `timeout` passes (graceful shutdown, tests).
pub async fn flush(pool: &Pool, js: &jetstream::Context, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let published = relay_batch(pool, js, 512).await?;
        if published == 0 && backlog(pool).await? == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("outbox not flushed within {timeout:?}");
        }
    }
}

/// Starts the relay in the background; it stops when `shutdown` turns true, after a last
/// flush attempt.
pub fn spawn_relay(
    pool: Pool,
    db_url: String,
    js: jetstream::Context,
    config: RelayConfig,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let wake = Arc::new(Notify::new());
    crate::listen::spawn_listener(db_url, "outbox", wake.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut last_prune = tokio::time::Instant::now();
        let mut failures: u32 = 0;
        // Looks left after a local write (its transaction commits a moment later).
        let mut after_write: usize = crate::wake::AFTER_WRITE.len();
        let mut last_gauge = tokio::time::Instant::now() - Duration::from_secs(1);
        loop {
            match relay_batch(&pool, &js, config.batch).await {
                Ok(n) if n > 0 => {
                    failures = 0;
                    after_write = crate::wake::AFTER_WRITE.len();
                    continue; // more may be waiting
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(error = %e, failures, "outbox relay could not publish; retrying");
                    }
                }
            }
            // A count over the backlog: at most once a second, not once a round.
            if last_gauge.elapsed() >= Duration::from_secs(1) {
                last_gauge = tokio::time::Instant::now();
                if let Ok(n) = backlog(&pool).await {
                    metrics::gauge!("outbox_backlog").set(n as f64);
                }
            }
            if last_prune.elapsed() > Duration::from_secs(60) {
                last_prune = tokio::time::Instant::now();
                if let Err(e) = prune(&pool, config.retention).await {
                    tracing::warn!(error = %e, "outbox prune failed");
                }
            }
            let pause = if failures > 0 {
                Duration::from_millis(200 * u64::from(failures.min(10)))
            } else if let Some(pause) = crate::wake::AFTER_WRITE.get(after_write) {
                after_write += 1;
                *pause
            } else {
                config.poll_interval
            };
            tokio::select! {
                _ = crate::wake::OUTBOX.notified(), if failures == 0 => after_write = 0,
                _ = wake.notified(), if failures == 0 => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {
                    if let Err(e) = flush(&pool, &js, Duration::from_secs(5)).await {
                        tracing::warn!(error = %e, "outbox not flushed at shutdown; the next start publishes it");
                    }
                    return;
                }
            }
        }
    })
}

async fn prune(pool: &Pool, retention: Duration) -> anyhow::Result<usize> {
    let mut conn = db::pool::conn(pool).await?;
    let before = Utc::now() - chrono::Duration::from_std(retention)?;
    Ok(
        diesel::delete(outbox::table.filter(outbox::published_at.lt(before)))
            .execute(&mut conn)
            .await?,
    )
}
