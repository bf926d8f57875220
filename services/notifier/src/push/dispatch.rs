//! Which event pushes what to whom.
//!
//! Each handler is an idempotent consumer: it skips an event already handled, sends its
//! pushes (no database connection held meanwhile), then records every attempt, removes the
//! tokens the provider reported dead, writes any outbox event and marks the event handled,
//! all in one transaction. A crash between the sends and that commit sends the pushes again
//! on redelivery (at least once; apps deduplicate a ring by `callId`) — except for
//! `session.live`, whose followers are claimed before sending so none is told twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::consumer::{Handler, HandlerError};
use bus::proto::{CallChanged, GiftSent, PushResult, SessionChanged};
use bus::{Event, Family, Incoming};
use db::models::{NewPushDelivery, PushDevice};
use db::queries::{profiles, push as q};
use diesel_async::AsyncConnection;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::provider::{DeviceKind, Notification, Outcome, Platform, Push, PushKind, Router};

/// Durable consumer of `call.*` (and its `processed_events` name).
pub const CALL_CONSUMER: &str = "notifier-push-calls";
/// Durable consumer of `session.*`.
pub const SESSION_CONSUMER: &str = "notifier-push-sessions";

/// How long FCM (and an APNs alert) may hold a ring for an offline phone: about the ring
/// timeout; a ring arriving later than that is for a call that is over.
const RING_TTL: Duration = Duration::from_secs(30);
/// Cancel / missed updates are useful a little longer.
const UPDATE_TTL: Duration = Duration::from_secs(300);

/// Everything the handlers share.
pub struct Dispatcher {
    pub pool: db::Pool,
    pub subjects: bus::Subjects,
    pub router: Router,
    pub concurrency: usize,
    pub live_batch: i64,
}

/// One push attempt and what came of it.
struct Attempt {
    device: PushDevice,
    provider: &'static str,
    kind: PushKind,
    outcome: Outcome,
    latency_ms: i32,
}

fn uuid_of(what: &str, s: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(s)
        .map_err(|_| HandlerError::Permanent(anyhow::anyhow!("{what} `{s}` is not a UUID")))
}

fn parsed(device: &PushDevice) -> Option<(Platform, DeviceKind)> {
    Some((
        Platform::parse(&device.platform)?,
        DeviceKind::parse(&device.kind)?,
    ))
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn call_kind_word(call_type: &str) -> &'static str {
    if call_type == "video_call" {
        "video"
    } else {
        "audio"
    }
}

/// A standard (never VoIP) push of `kind` with `data` to each of `devices` that is not an
/// iOS VoIP token: iOS gets it as an alert or a background push, Android as a notification
/// or a data message.
fn standard_pushes(
    devices: Vec<PushDevice>,
    kind: PushKind,
    notification: Option<Notification>,
    data: &BTreeMap<String, String>,
    high_priority: bool,
    ttl: Duration,
    collapse_id: Option<&str>,
) -> Vec<(PushDevice, Push)> {
    devices
        .into_iter()
        .filter(|d| matches!(parsed(d), Some((_, DeviceKind::Standard))))
        .map(|d| {
            let push = Push {
                token: d.token.clone(),
                kind,
                notification: notification.clone(),
                data: data.clone(),
                high_priority,
                ttl: Some(ttl),
                collapse_id: collapse_id.map(str::to_owned),
            };
            (d, push)
        })
        .collect()
}

/// The ring: a VoIP push to every iOS VoIP token, a high-priority data message to every
/// Android token, and an alert to iOS standard tokens only when the callee has no VoIP
/// token (an old app version).
fn ring_pushes(
    devices: Vec<PushDevice>,
    call: &CallChanged,
    caller_name: &str,
) -> Vec<(PushDevice, Push)> {
    let payload = data(&[
        ("type", "incoming_call"),
        ("callId", &call.call_id),
        ("callerId", &call.caller_id),
        ("callerName", caller_name),
        ("callType", &call.call_type),
    ]);
    let has_voip = devices
        .iter()
        .any(|d| parsed(d) == Some((Platform::Ios, DeviceKind::Voip)));
    devices
        .into_iter()
        .filter_map(|d| {
            let (kind, ttl, notification) = match parsed(&d)? {
                // apns-expiration 0: now or never.
                (Platform::Ios, DeviceKind::Voip) => (PushKind::Voip, Duration::ZERO, None),
                (Platform::Ios, DeviceKind::Standard) if !has_voip => (
                    PushKind::Alert,
                    RING_TTL,
                    Some(Notification {
                        title: caller_name.to_owned(),
                        body: format!("Incoming {} call", call_kind_word(&call.call_type)),
                    }),
                ),
                (Platform::Ios, DeviceKind::Standard) => return None,
                (Platform::Android, _) => (PushKind::Data, RING_TTL, None),
            };
            let push = Push {
                token: d.token.clone(),
                kind,
                notification,
                data: payload.clone(),
                high_priority: true,
                ttl: Some(ttl),
                collapse_id: Some(call.call_id.clone()),
            };
            Some((d, push))
        })
        .collect()
}

impl Dispatcher {
    async fn send_all(&self, targets: Vec<(PushDevice, Push)>) -> Vec<Attempt> {
        futures_util::stream::iter(targets)
            .map(|(device, push)| async move {
                let platform = Platform::parse(&device.platform).unwrap_or(Platform::Android);
                let provider = self.router.for_platform(platform);
                let started = Instant::now();
                let outcome = provider.send(&push).await;
                let elapsed = started.elapsed();
                let name = provider.name();
                metrics::counter!("push_attempts_total", "provider" => name, "kind" => push.kind.as_str(), "outcome" => outcome.status()).increment(1);
                metrics::histogram!("push_latency_seconds", "provider" => name)
                    .record(elapsed.as_secs_f64());
                match &outcome {
                    Outcome::Failed { error, http_status } => tracing::warn!(
                        push.provider = name,
                        push.kind = push.kind.as_str(),
                        user.id = %device.user_id,
                        http.status = http_status.unwrap_or(0),
                        error = %error,
                        "push failed"
                    ),
                    Outcome::Unregistered { reason, .. } => tracing::info!(
                        push.provider = name,
                        user.id = %device.user_id,
                        reason = %reason,
                        "push token unregistered; removing it"
                    ),
                    Outcome::Delivered { .. } => {}
                }
                Attempt {
                    device,
                    provider: name,
                    kind: push.kind,
                    outcome,
                    latency_ms: elapsed.as_millis().min(i32::MAX as u128) as i32,
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Records `attempts`, removes dead tokens, writes `events` and (with `consumer`) marks
    /// the event handled, in one transaction. A racing replica that handled it first wins:
    /// then nothing is written.
    async fn record(
        &self,
        consumer: Option<&str>,
        event_id: Uuid,
        attempts: &[Attempt],
        events: &[Event],
    ) -> Result<(), HandlerError> {
        let rows: Vec<NewPushDelivery> = attempts
            .iter()
            .map(|a| NewPushDelivery {
                id: Uuid::now_v7(),
                device_id: Some(a.device.id),
                user_id: a.device.user_id,
                provider: a.provider,
                push_kind: a.kind.as_str(),
                event_id: Some(event_id),
                status: a.outcome.status(),
                http_status: a.outcome.http_status().map(i32::from),
                error: a.outcome.error(),
                latency_ms: Some(a.latency_ms),
            })
            .collect();
        let ids_where = |f: fn(&Outcome) -> bool| -> Vec<Uuid> {
            attempts
                .iter()
                .filter(|a| f(&a.outcome))
                .map(|a| a.device.id)
                .collect()
        };
        let dead = ids_where(|o| matches!(o, Outcome::Unregistered { .. }));
        let used = ids_where(|o| matches!(o, Outcome::Delivered { .. }));
        let mut conn = db::pool::conn(&self.pool).await?;
        let subjects = &self.subjects;
        conn.transaction::<(), db::DbError, _>(async |c| {
            if let Some(consumer) = consumer
                && !bus::consumer::mark_processed(c, consumer, event_id).await?
            {
                return Ok(());
            }
            q::insert_deliveries(c, &rows).await?;
            q::delete_devices(c, &dead).await?;
            q::touch_devices(c, &used).await?;
            bus::outbox::enqueue_all(c, subjects, events).await?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn username(
        &self,
        conn: &mut db::AsyncPgConnection,
        user: Uuid,
    ) -> Result<String, HandlerError> {
        Ok(profiles::find(conn, user)
            .await?
            .map(|p| p.username)
            .unwrap_or_else(|| "Someone".to_owned()))
    }

    /// The devices of `user` and the username of `other` (caller, sender), or `None` when
    /// `consumer` already handled `ev`. The connection goes back before any push is sent.
    async fn targets_of(
        &self,
        consumer: &str,
        ev: &Incoming,
        user: Uuid,
        other: Uuid,
    ) -> Result<Option<(Vec<PushDevice>, String)>, HandlerError> {
        let mut conn = db::pool::conn(&self.pool).await?;
        if q::already_processed(&mut conn, consumer, ev.id).await? {
            return Ok(None);
        }
        let devices = q::devices_of(&mut conn, &[user]).await?;
        let name = self.username(&mut conn, other).await?;
        Ok(Some((devices, name)))
    }

    /// `call.initiated`: ring the callee, then `notify.push_result`.
    async fn incoming_call(&self, ev: &Incoming, call: &CallChanged) -> Result<(), HandlerError> {
        let callee = uuid_of("callee_id", &call.callee_id)?;
        let caller = uuid_of("caller_id", &call.caller_id)?;
        let Some((devices, caller_name)) =
            self.targets_of(CALL_CONSUMER, ev, callee, caller).await?
        else {
            return Ok(());
        };
        let attempts = self
            .send_all(ring_pushes(devices, call, &caller_name))
            .await;
        let delivered = attempts
            .iter()
            .any(|a| matches!(a.outcome, Outcome::Delivered { .. }));
        let error = if attempts.is_empty() {
            "no_device".to_owned()
        } else if delivered {
            String::new()
        } else {
            attempts
                .iter()
                .find_map(|a| a.outcome.error())
                .unwrap_or_default()
        };
        let result = PushResult {
            user_id: callee.to_string(),
            ref_id: call.call_id.clone(),
            purpose: "incoming_call".into(),
            delivered,
            devices: attempts.len() as i32,
            error: error.clone(),
        };
        let event = Event::new(Family::Notify, "push_result", &call.call_id, &result);
        self.record(Some(CALL_CONSUMER), ev.id, &attempts, &[event])
            .await?;
        tracing::info!(call.id = %call.call_id, delivered, devices = attempts.len(), error = %error, "incoming call pushed");
        Ok(())
    }

    /// `call.cancelled` / `call.missed`: standard pushes only. iOS terminates an app that
    /// gets a VoIP push without reporting a call to CallKit, so VoIP tokens get nothing.
    async fn call_update(&self, ev: &Incoming, call: &CallChanged) -> Result<(), HandlerError> {
        let callee = uuid_of("callee_id", &call.callee_id)?;
        let caller = uuid_of("caller_id", &call.caller_id)?;
        let Some((devices, caller_name)) =
            self.targets_of(CALL_CONSUMER, ev, callee, caller).await?
        else {
            return Ok(());
        };
        let missed = ev.event_type == "call.missed";
        let kind_word = call_kind_word(&call.call_type);
        let payload = data(&[
            (
                "type",
                if missed {
                    "missed_call"
                } else {
                    "call_cancelled"
                },
            ),
            ("callId", &call.call_id),
            ("callerId", &call.caller_id),
            ("callerName", &caller_name),
            ("callType", &call.call_type),
        ]);
        let targets = if missed {
            let n = Notification {
                title: format!("Missed call from {caller_name}"),
                body: format!("Missed {kind_word} call"),
            };
            standard_pushes(
                devices,
                PushKind::Alert,
                Some(n),
                &payload,
                true,
                UPDATE_TTL,
                Some(&call.call_id),
            )
        } else {
            // Silent: the app stops its ringing screen; nothing for the user to read.
            standard_pushes(
                devices,
                PushKind::Data,
                None,
                &payload,
                true,
                UPDATE_TTL,
                Some(&call.call_id),
            )
        };
        let attempts = self.send_all(targets).await;
        self.record(Some(CALL_CONSUMER), ev.id, &attempts, &[])
            .await
    }

    /// `session.live`: "<creator> is live" to every follower, claimed in batches so none is
    /// told twice, even across redeliveries and replicas.
    async fn session_live(&self, ev: &Incoming, s: &SessionChanged) -> Result<(), HandlerError> {
        let session = uuid_of("session_id", &s.session_id)?;
        let creator = uuid_of("creator_id", &s.creator_id)?;
        let mut conn = db::pool::conn(&self.pool).await?;
        if q::already_processed(&mut conn, SESSION_CONSUMER, ev.id).await? {
            return Ok(());
        }
        let creator_name = self.username(&mut conn, creator).await?;
        drop(conn);
        let payload = data(&[
            ("type", "session_live"),
            ("sessionId", &s.session_id),
            ("creatorId", &s.creator_id),
            ("creatorName", &creator_name),
            ("sessionType", &s.session_type),
        ]);
        let notification = Notification {
            title: format!("{creator_name} is live"),
            body: s.title.clone(),
        };
        let mut told = 0usize;
        loop {
            let mut conn = db::pool::conn(&self.pool).await?;
            let batch = q::claim_followers(&mut conn, session, creator, self.live_batch).await?;
            if batch.is_empty() {
                break;
            }
            let devices = q::devices_of(&mut conn, &batch).await?;
            drop(conn);
            let targets = standard_pushes(
                devices,
                PushKind::Alert,
                Some(notification.clone()),
                &payload,
                false,
                UPDATE_TTL,
                Some(&s.session_id),
            );
            let attempts = self.send_all(targets).await;
            self.record(None, ev.id, &attempts, &[]).await?;
            told += batch.len();
            if (batch.len() as i64) < self.live_batch {
                break;
            }
        }
        let mut conn = db::pool::conn(&self.pool).await?;
        bus::consumer::mark_processed(&mut conn, SESSION_CONSUMER, ev.id).await?;
        tracing::info!(session.id = %s.session_id, followers = told, "followers told the session is live");
        Ok(())
    }

    /// `session.gift_sent`: an alert to the recipient (the host).
    async fn gift(&self, ev: &Incoming, g: &GiftSent) -> Result<(), HandlerError> {
        let recipient = uuid_of("recipient_id", &g.recipient_id)?;
        let sender = uuid_of("sender_id", &g.sender_id)?;
        let Some((devices, sender_name)) = self
            .targets_of(SESSION_CONSUMER, ev, recipient, sender)
            .await?
        else {
            return Ok(());
        };
        let coins = g.coins.to_string();
        let payload = data(&[
            ("type", "gift_received"),
            ("sessionId", &g.session_id),
            ("senderId", &g.sender_id),
            ("senderName", &sender_name),
            ("giftId", &g.gift_id),
            ("coins", &coins),
        ]);
        let n = Notification {
            title: format!("{sender_name} sent you a gift"),
            body: format!("{coins} coins"),
        };
        let targets = standard_pushes(
            devices,
            PushKind::Alert,
            Some(n),
            &payload,
            false,
            UPDATE_TTL,
            None,
        );
        let attempts = self.send_all(targets).await;
        self.record(Some(SESSION_CONSUMER), ev.id, &attempts, &[])
            .await
    }
}

fn decode<M: prost::Message + Default>(ev: &Incoming) -> Result<M, HandlerError> {
    ev.payload::<M>()
        .map_err(|e| HandlerError::Permanent(anyhow::anyhow!("undecodable {}: {e}", ev.event_type)))
}

/// The `call.*` consumer.
pub struct CallPushes(pub Arc<Dispatcher>);

impl Handler for CallPushes {
    fn handle(&self, event: Incoming) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(async move {
            let call: CallChanged = decode(&event)?;
            match event.event_type.as_str() {
                "call.initiated" => self.0.incoming_call(&event, &call).await,
                "call.cancelled" | "call.missed" => self.0.call_update(&event, &call).await,
                _ => Ok(()),
            }
        })
    }
}

/// The `session.*` consumer.
pub struct SessionPushes(pub Arc<Dispatcher>);

impl Handler for SessionPushes {
    fn handle(&self, event: Incoming) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(async move {
            match event.event_type.as_str() {
                "session.live" => self.0.session_live(&event, &decode(&event)?).await,
                "session.gift_sent" => self.0.gift(&event, &decode(&event)?).await,
                _ => Ok(()),
            }
        })
    }
}
