-- Private calls (call-signaling), moderation (moderation) and push devices (notifier).

CREATE TABLE calls (
    id            uuid PRIMARY KEY,
    caller_id     uuid NOT NULL REFERENCES profiles (id),
    callee_id     uuid NOT NULL REFERENCES profiles (id),
    call_type     text NOT NULL CHECK (call_type IN ('audio_call', 'video_call')),
    status        text NOT NULL DEFAULT 'initiated'
                  CHECK (status IN ('initiated', 'ringing', 'accepted', 'live', 'ended',
                                    'rejected', 'missed', 'cancelled', 'busy', 'failed')),
    room_name     text NOT NULL UNIQUE,
    ended_reason  text CHECK (char_length(ended_reason) <= 64),
    created_at    timestamptz NOT NULL DEFAULT now(),
    ringing_at    timestamptz,
    answered_at   timestamptz,
    live_at       timestamptz,
    ended_at      timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (caller_id <> callee_id),
    CHECK ((status IN ('initiated', 'ringing', 'accepted', 'live')) = (ended_at IS NULL))
);
CREATE INDEX calls_caller_id_idx ON calls (caller_id, created_at DESC);
CREATE INDEX calls_callee_id_idx ON calls (callee_id, created_at DESC);

-- Busy, enforced by the database: a user is a party of at most one active call
-- (initiated, ringing, accepted, live). Both parties' rows are inserted with the call
-- and deleted when it leaves the active states, in the same transaction.
CREATE TABLE call_busy (
    user_id  uuid PRIMARY KEY REFERENCES profiles (id) ON DELETE CASCADE,
    call_id  uuid NOT NULL REFERENCES calls (id) ON DELETE CASCADE
);
CREATE INDEX call_busy_call_id_idx ON call_busy (call_id);

CREATE TABLE live_session_bans (
    session_id  uuid NOT NULL REFERENCES live_sessions (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    banned_by   uuid NOT NULL REFERENCES profiles (id),
    reason      text CHECK (char_length(reason) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, user_id)
);
CREATE INDEX live_session_bans_user_id_idx ON live_session_bans (user_id);
CREATE INDEX live_session_bans_banned_by_idx ON live_session_bans (banned_by);

-- Permanent ban of a user from every session of one creator.
CREATE TABLE creator_bans (
    creator_id  uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    reason      text CHECK (char_length(reason) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (creator_id, user_id),
    CHECK (creator_id <> user_id)
);
CREATE INDEX creator_bans_user_id_idx ON creator_bans (user_id);

CREATE TABLE live_reports (
    id                uuid PRIMARY KEY,
    reporter_id       uuid NOT NULL REFERENCES profiles (id),
    reported_user_id  uuid NOT NULL REFERENCES profiles (id),
    session_id        uuid REFERENCES live_sessions (id) ON DELETE SET NULL,
    reason            text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 200),
    details           text CHECK (char_length(details) <= 2000),
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'dismissed', 'warned', 'banned')),
    resolved_by       uuid REFERENCES profiles (id),
    resolved_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'pending') = (resolved_at IS NULL))
);
CREATE INDEX live_reports_status_idx ON live_reports (status, created_at);
CREATE INDEX live_reports_reporter_id_idx ON live_reports (reporter_id);
CREATE INDEX live_reports_reported_user_id_idx ON live_reports (reported_user_id);
CREATE INDEX live_reports_session_id_idx ON live_reports (session_id);
CREATE INDEX live_reports_resolved_by_idx ON live_reports (resolved_by);

-- Operator switches (the kill switch `live_sessions_disabled`, ...).
CREATE TABLE system_config (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  uuid REFERENCES profiles (id) ON DELETE SET NULL
);
CREATE INDEX system_config_updated_by_idx ON system_config (updated_by);
INSERT INTO system_config (key, value) VALUES ('live_sessions_disabled', 'false');

-- Alerts fire on entry and resolve on exit: their current state.
CREATE TABLE alert_states (
    name        text PRIMARY KEY,
    severity    text NOT NULL CHECK (severity IN ('ok', 'warning', 'critical')),
    since       timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE push_devices (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    platform      text NOT NULL CHECK (platform IN ('ios', 'android')),
    kind          text NOT NULL CHECK (kind IN ('voip', 'standard')),
    token         text NOT NULL UNIQUE CHECK (char_length(token) BETWEEN 1 AND 4096),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);
CREATE INDEX push_devices_user_id_idx ON push_devices (user_id);

-- Every push attempt.
CREATE TABLE push_deliveries (
    id           uuid PRIMARY KEY,
    device_id    uuid REFERENCES push_devices (id) ON DELETE SET NULL,
    user_id      uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    provider     text NOT NULL CHECK (provider IN ('apns', 'fcm', 'log')),
    push_kind    text NOT NULL CHECK (push_kind IN ('voip', 'alert', 'data')),
    event_id     uuid,
    status       text NOT NULL CHECK (status IN ('delivered', 'failed', 'unregistered')),
    http_status  integer,
    error        text,
    latency_ms   integer,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_deliveries_device_id_idx ON push_deliveries (device_id);
CREATE INDEX push_deliveries_user_id_idx ON push_deliveries (user_id, created_at DESC);

-- Followers already told that a session went live (no follower twice per session).
CREATE TABLE live_notifications_sent (
    session_id  uuid NOT NULL REFERENCES live_sessions (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, user_id)
);
CREATE INDEX live_notifications_sent_user_id_idx ON live_notifications_sent (user_id);
