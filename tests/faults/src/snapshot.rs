//! The record of a trial as the system keeps it: the rows of its database (sessions, calls,
//! LiveKit's connections, deadlines, the outbox with every event decoded, what each
//! consumer handled, pushes, wallets and the ledger) and the JetStream streams' counts.
//! Plain data, so the invariant checker can be fed a made-up one in its tests.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use bus::proto;
use chrono::{DateTime, Utc};
use prost::Message;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub creator: Uuid,
    pub status: String,
    pub end_reason: Option<String>,
    pub room: String,
    /// `price_coins`: set exactly for pay-per-view sessions.
    pub price: Option<i64>,
    pub ended_at: Option<DateTime<Utc>>,
    pub viewer_count: i32,
    pub total_gifts_received: i64,
    pub total_gift_coins: i64,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub id: Uuid,
    pub caller: Uuid,
    pub callee: Uuid,
    pub status: String,
    pub ended_reason: Option<String>,
    pub room: String,
    pub ended_at: Option<DateTime<Utc>>,
}

/// One LiveKit connection (`livekit_participations`).
#[derive(Debug, Clone)]
pub struct Participation {
    pub sid: String,
    pub room: String,
    pub identity: String,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub left_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Deadline {
    pub id: Uuid,
    pub kind: String,
    pub subject: Uuid,
    pub due_at: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
}

/// An outbox row with its envelope and payload decoded.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    /// `session.live`, without the namespace.
    pub event_type: String,
    pub published: bool,
    pub body: Body,
}

impl Event {
    /// `session`, `call`, `livekit`, `notify`, `moderation`.
    pub fn family(&self) -> &str {
        self.event_type.split('.').next().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub enum Body {
    Session(proto::SessionChanged),
    Call(proto::CallChanged),
    LiveKit(proto::LiveKitEvent),
    Push(proto::PushResult),
    Gift(proto::GiftSent),
    Other,
}

/// The session events that carry a status change (`SessionChanged`).
pub const SESSION_STATUS_EVENTS: [&str; 8] = [
    "session.created",
    "session.live",
    "session.paused",
    "session.resumed",
    "session.host_disconnected",
    "session.host_returned",
    "session.ended",
    "session.changed",
];

#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: Option<Uuid>,
    pub device: Option<Uuid>,
    pub user: Uuid,
    pub push_kind: String,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: Uuid,
    pub user: Uuid,
    pub platform: String,
    pub kind: String,
}

#[derive(Debug, Clone)]
pub struct Ledger {
    pub user: Uuid,
    pub amount: i64,
    pub kind: String,
    pub ref_id: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct Gift {
    pub id: Uuid,
    pub session: Uuid,
    pub sender: Uuid,
    pub recipient: Uuid,
    pub coins: i64,
    pub host_share: i64,
    pub platform_share: i64,
}

#[derive(Debug, Clone)]
pub struct Payment {
    pub session: Uuid,
    pub viewer: Uuid,
    pub amount: i64,
    pub host_share: i64,
}

/// The JetStream side: messages in each family's stream, and dead letters.
#[derive(Debug, Clone, Default)]
pub struct BusState {
    pub stream_messages: HashMap<String, u64>,
    pub dead_letters: u64,
    /// The durable consumers the checker follows, by name.
    pub consumers: HashMap<String, ConsumerState>,
}

/// What JetStream holds for one durable consumer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsumerState {
    pub ack_wait: std::time::Duration,
    /// Delivered and neither acknowledged nor given up: JetStream delivers them again.
    pub ack_pending: u64,
}

/// The consumers whose `processed_events` the checker expects, and their streams.
pub const CONSUMERS: [(&str, bus::Family); 5] = [
    ("session-manager-livekit", bus::Family::LiveKit),
    ("call-signaling-livekit", bus::Family::LiveKit),
    ("call-signaling-push", bus::Family::Notify),
    ("notifier-push-calls", bus::Family::Call),
    ("notifier-push-sessions", bus::Family::Session),
];

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub sessions: Vec<Session>,
    pub calls: Vec<Call>,
    /// `call_busy` rows: (user, call).
    pub busy: Vec<(Uuid, Uuid)>,
    /// Active `live_participants`: (session, user).
    pub present: Vec<(Uuid, Uuid)>,
    pub participations: Vec<Participation>,
    pub deadlines: Vec<Deadline>,
    pub events: Vec<Event>,
    /// `processed_events`: (consumer, event id).
    pub processed: HashSet<(String, Uuid)>,
    pub deliveries: Vec<Delivery>,
    pub devices: Vec<Device>,
    /// (follower, creator).
    pub follows: Vec<(Uuid, Uuid)>,
    /// `live_notifications_sent`: (session, user).
    pub live_notified: Vec<(Uuid, Uuid)>,
    pub wallets: Vec<(Uuid, i64)>,
    pub ledger: Vec<Ledger>,
    pub gifts: Vec<Gift>,
    pub payments: Vec<Payment>,
    /// Rows of `webhook_events`.
    pub webhooks: i64,
    /// When each `participant_left` webhook was stored: (participant sid, received at).
    pub leaves_received: Vec<(String, DateTime<Utc>)>,
    /// `Idempotency-Key`s claimed and never completed.
    pub open_keys: i64,
    pub bus: BusState,
}

/// Reads the snapshot of a trial's database and namespace.
pub async fn load(
    db: &tokio_postgres::Client,
    js: &async_nats::jetstream::Context,
    namespace: &str,
) -> anyhow::Result<Snapshot> {
    let q = async |sql: &str| {
        db.query(sql, &[])
            .await
            .with_context(|| format!("snapshot query: {sql}"))
    };
    let mut s = Snapshot::default();
    for r in q("SELECT id, creator_id, status, end_reason, room_name, price_coins, ended_at, viewer_count, total_gifts_received, total_gift_coins FROM live_sessions").await? {
        s.sessions.push(Session {
            id: r.get(0),
            creator: r.get(1),
            status: r.get(2),
            end_reason: r.get(3),
            room: r.get(4),
            price: r.get(5),
            ended_at: r.get(6),
            viewer_count: r.get(7),
            total_gifts_received: r.get(8),
            total_gift_coins: r.get(9),
        });
    }
    for r in
        q("SELECT id, caller_id, callee_id, status, ended_reason, room_name, ended_at FROM calls")
            .await?
    {
        s.calls.push(Call {
            id: r.get(0),
            caller: r.get(1),
            callee: r.get(2),
            status: r.get(3),
            ended_reason: r.get(4),
            room: r.get(5),
            ended_at: r.get(6),
        });
    }
    for r in q("SELECT user_id, call_id FROM call_busy").await? {
        s.busy.push((r.get(0), r.get(1)));
    }
    for r in q("SELECT session_id, user_id FROM live_participants WHERE is_active").await? {
        s.present.push((r.get(0), r.get(1)));
    }
    for r in q("SELECT participant_sid, room_name, identity, joined_at, left_at, left_reason FROM livekit_participations").await? {
        s.participations.push(Participation {
            sid: r.get(0),
            room: r.get(1),
            identity: r.get(2),
            joined_at: r.get(3),
            left_at: r.get(4),
            left_reason: r.get(5),
        });
    }
    for r in
        q("SELECT id, kind, subject_id, due_at, fired_at, cancelled_at, outcome FROM deadlines")
            .await?
    {
        s.deadlines.push(Deadline {
            id: r.get(0),
            kind: r.get(1),
            subject: r.get(2),
            due_at: r.get(3),
            fired_at: r.get(4),
            cancelled_at: r.get(5),
            outcome: r.get(6),
        });
    }
    for r in q("SELECT id, payload, published_at IS NOT NULL FROM outbox ORDER BY id").await? {
        let payload: Vec<u8> = r.get(1);
        let env = proto::Envelope::decode(payload.as_slice())
            .context("an outbox row that is no envelope")?;
        s.events.push(Event {
            id: r.get(0),
            body: decode_body(&env.r#type, &env.payload),
            event_type: env.r#type,
            published: r.get(2),
        });
    }
    for r in q("SELECT consumer, event_id FROM processed_events").await? {
        s.processed.insert((r.get(0), r.get(1)));
    }
    for r in q("SELECT event_id, device_id, user_id, push_kind FROM push_deliveries").await? {
        s.deliveries.push(Delivery {
            event_id: r.get(0),
            device: r.get(1),
            user: r.get(2),
            push_kind: r.get(3),
        });
    }
    for r in q("SELECT id, user_id, platform, kind FROM push_devices").await? {
        s.devices.push(Device {
            id: r.get(0),
            user: r.get(1),
            platform: r.get(2),
            kind: r.get(3),
        });
    }
    for r in q("SELECT follower_id, creator_id FROM follows").await? {
        s.follows.push((r.get(0), r.get(1)));
    }
    for r in q("SELECT session_id, user_id FROM live_notifications_sent").await? {
        s.live_notified.push((r.get(0), r.get(1)));
    }
    for r in q("SELECT user_id, balance FROM coin_wallets").await? {
        s.wallets.push((r.get(0), r.get(1)));
    }
    for r in q("SELECT user_id, amount, kind, ref_id FROM coin_transactions").await? {
        s.ledger.push(Ledger {
            user: r.get(0),
            amount: r.get(1),
            kind: r.get(2),
            ref_id: r.get(3),
        });
    }
    for r in q("SELECT id, session_id, sender_id, recipient_id, coins, host_share, platform_share FROM live_gifts").await? {
        s.gifts.push(Gift {
            id: r.get(0),
            session: r.get(1),
            sender: r.get(2),
            recipient: r.get(3),
            coins: r.get(4),
            host_share: r.get(5),
            platform_share: r.get(6),
        });
    }
    for r in q("SELECT session_id, viewer_id, amount, host_share FROM live_payments").await? {
        s.payments.push(Payment {
            session: r.get(0),
            viewer: r.get(1),
            amount: r.get(2),
            host_share: r.get(3),
        });
    }
    s.webhooks = q("SELECT count(*) FROM webhook_events").await?[0].get(0);
    for r in q("SELECT participant_sid, received_at FROM webhook_events WHERE event = 'participant_left' AND participant_sid IS NOT NULL").await? {
        s.leaves_received.push((r.get(0), r.get(1)));
    }
    s.open_keys =
        q("SELECT count(*) FROM idempotency_keys WHERE completed_at IS NULL").await?[0].get(0);
    s.bus = bus_state(js, namespace).await?;
    Ok(s)
}

fn decode_body(event_type: &str, payload: &[u8]) -> Body {
    let decoded = match event_type.split('.').next().unwrap_or_default() {
        "session" if event_type == "session.gift_sent" => {
            proto::GiftSent::decode(payload).map(Body::Gift)
        }
        "session" if SESSION_STATUS_EVENTS.contains(&event_type) => {
            proto::SessionChanged::decode(payload).map(Body::Session)
        }
        "call" => proto::CallChanged::decode(payload).map(Body::Call),
        "livekit" => proto::LiveKitEvent::decode(payload).map(Body::LiveKit),
        "notify" if event_type == "notify.push_result" => {
            proto::PushResult::decode(payload).map(Body::Push)
        }
        _ => Ok(Body::Other),
    };
    decoded.unwrap_or(Body::Other)
}

/// Message counts of the namespace's streams.
pub async fn bus_state(
    js: &async_nats::jetstream::Context,
    namespace: &str,
) -> anyhow::Result<BusState> {
    let subjects = bus::Subjects::new(namespace);
    let mut state = BusState::default();
    for family in bus::Family::ALL {
        let mut stream = js
            .get_stream(subjects.stream(family))
            .await
            .map_err(|e| anyhow::anyhow!("stream {}: {e}", subjects.stream(family)))?;
        let info = stream
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("stream info: {e}"))?;
        state
            .stream_messages
            .insert(family.as_str().to_owned(), info.state.messages);
    }
    for (name, family) in CONSUMERS {
        let stream = js
            .get_stream(subjects.stream(family))
            .await
            .map_err(|e| anyhow::anyhow!("stream {}: {e}", subjects.stream(family)))?;
        if let Ok(info) = stream.consumer_info(name).await {
            state.consumers.insert(
                name.to_owned(),
                ConsumerState {
                    ack_wait: info.config.ack_wait,
                    ack_pending: info.num_ack_pending as u64,
                },
            );
        }
    }
    let mut dead = js
        .get_stream(subjects.dead_letter_stream())
        .await
        .map_err(|e| anyhow::anyhow!("dead-letter stream: {e}"))?;
    state.dead_letters = dead
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("stream info: {e}"))?
        .state
        .messages;
    Ok(state)
}
