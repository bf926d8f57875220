//! Rows as Rust types: `X` to read (`Queryable`/`Selectable`), `NewX` to insert.
//! Enum columns are checked text in the database and parsed into `domain` types at the
//! edge (the query functions), so a row read here is already trusted.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::schema::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = profiles, check_for_backend(diesel::pg::Pg))]
pub struct Profile {
    pub id: Uuid,
    pub username: String,
    pub is_creator: bool,
    pub role: Option<String>,
    pub banned_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = profiles)]
pub struct NewProfile<'a> {
    pub id: Uuid,
    pub username: &'a str,
    pub is_creator: bool,
    pub role: Option<&'a str>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = live_sessions, check_for_backend(diesel::pg::Pg))]
pub struct LiveSession {
    pub id: Uuid,
    pub creator_id: Uuid,
    pub session_type: String,
    pub title: String,
    pub access_type: String,
    pub price_coins: Option<i64>,
    pub status: String,
    pub room_name: String,
    pub max_guests: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub host_left_at: Option<DateTime<Utc>>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_activity_at: DateTime<Utc>,
    pub viewer_count: i32,
    pub peak_viewers: i32,
    pub total_duration_seconds: i64,
    pub total_messages: i64,
    pub total_gifts_received: i64,
    pub total_gift_coins: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = live_sessions)]
pub struct NewLiveSession<'a> {
    pub id: Uuid,
    pub creator_id: Uuid,
    pub session_type: &'a str,
    pub title: &'a str,
    pub access_type: &'a str,
    pub price_coins: Option<i64>,
    pub status: &'a str,
    pub room_name: &'a str,
    pub max_guests: Option<i32>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = live_participants, check_for_backend(diesel::pg::Pg))]
pub struct LiveParticipant {
    pub id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
    pub participant_sid: Option<String>,
    pub is_active: bool,
    pub first_joined_at: Option<DateTime<Utc>>,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = livekit_participations, check_for_backend(diesel::pg::Pg))]
pub struct Participation {
    pub participant_sid: String,
    pub room_name: String,
    pub identity: String,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub left_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = live_payments, check_for_backend(diesel::pg::Pg))]
pub struct LivePayment {
    pub id: Uuid,
    pub session_id: Uuid,
    pub viewer_id: Uuid,
    pub amount: i64,
    pub host_share: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = coin_transactions, check_for_backend(diesel::pg::Pg))]
pub struct CoinTransaction {
    pub id: Uuid,
    pub user_id: Uuid,
    pub amount: i64,
    pub kind: String,
    pub ref_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_events, check_for_backend(diesel::pg::Pg))]
pub struct WebhookEventRow {
    pub id: String,
    pub event: String,
    pub room_name: Option<String>,
    pub participant_sid: Option<String>,
    pub identity: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_events)]
pub struct NewWebhookEvent<'a> {
    pub id: &'a str,
    pub event: &'a str,
    pub room_name: Option<&'a str>,
    pub participant_sid: Option<&'a str>,
    pub identity: Option<&'a str>,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox, check_for_backend(diesel::pg::Pg))]
pub struct OutboxRow {
    pub id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub attempts: i32,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewOutboxRow {
    pub id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: serde_json::Value,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deadlines, check_for_backend(diesel::pg::Pg))]
pub struct DeadlineRow {
    pub id: Uuid,
    pub kind: String,
    pub subject_id: Uuid,
    pub due_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = deadlines)]
pub struct NewDeadline {
    pub id: Uuid,
    pub kind: String,
    pub subject_id: Uuid,
    pub due_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

/// A private call (`calls`), owned by call-signaling.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = calls, check_for_backend(diesel::pg::Pg))]
pub struct Call {
    pub id: Uuid,
    pub caller_id: Uuid,
    pub callee_id: Uuid,
    pub call_type: String,
    pub status: String,
    pub room_name: String,
    pub ended_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ringing_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub live_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = calls)]
pub struct NewCall<'a> {
    pub id: Uuid,
    pub caller_id: Uuid,
    pub callee_id: Uuid,
    pub call_type: &'a str,
    pub status: &'a str,
    pub room_name: &'a str,
    pub ended_reason: Option<&'a str>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A registered push token (`push_devices`), owned by the notifier. `platform` is `ios` |
/// `android`, `kind` `voip` | `standard` (checked by the table).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = push_devices, check_for_backend(diesel::pg::Pg))]
pub struct PushDevice {
    pub id: Uuid,
    pub user_id: Uuid,
    pub platform: String,
    pub kind: String,
    pub token: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// One push attempt for the delivery log (`push_deliveries`).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = push_deliveries)]
pub struct NewPushDelivery {
    pub id: Uuid,
    pub device_id: Option<Uuid>,
    pub user_id: Uuid,
    /// `apns` | `fcm` | `log`.
    pub provider: &'static str,
    /// `voip` | `alert` | `data`.
    pub push_kind: &'static str,
    pub event_id: Option<Uuid>,
    /// `delivered` | `failed` | `unregistered`.
    pub status: &'static str,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: Option<i32>,
}

/// A stage invitation (from the host) or request (from a viewer); `stage_requests`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = stage_requests, check_for_backend(diesel::pg::Pg))]
pub struct StageRequest {
    pub id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    /// `invitation` | `request` (`domain::stage::StageKind`).
    pub kind: String,
    /// `domain::stage::StageStatus`.
    pub status: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub responded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = stage_requests)]
pub struct NewStageRequest<'a> {
    pub id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub kind: &'a str,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}
