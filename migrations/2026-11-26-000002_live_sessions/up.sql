-- Live sessions (video broadcasts and audio rooms) and everything that happens in them.
-- Written by session-manager (and token-issuer for payments). Enums are checked text so
-- that the values read the same in SQL, in Rust (domain crate) and on the wire.

CREATE TABLE live_sessions (
    id                      uuid PRIMARY KEY,
    creator_id              uuid NOT NULL REFERENCES profiles (id),
    session_type            text NOT NULL CHECK (session_type IN ('video_live', 'audio_room')),
    title                   text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 120),
    access_type             text NOT NULL CHECK (access_type IN ('public', 'subscribers_only', 'pay_per_view')),
    price_coins             bigint CHECK (price_coins BETWEEN 1 AND 100000),
    status                  text NOT NULL DEFAULT 'created'
                            CHECK (status IN ('created', 'live', 'paused', 'host_disconnected', 'ended')),
    room_name               text NOT NULL UNIQUE,
    -- How many guests / speakers may be on stage at once (null: the configured default).
    max_guests              integer CHECK (max_guests BETWEEN 0 AND 50),
    created_at              timestamptz NOT NULL DEFAULT now(),
    started_at              timestamptz,
    ended_at                timestamptz,
    end_reason              text CHECK (end_reason IN ('host_ended', 'host_disconnected', 'admin_terminated',
                                                       'orphaned_cleanup', 'max_duration', 'room_finished', 'no_show')),
    host_left_at            timestamptz,
    -- LiveKit time of the newest room or participant event applied (ordering of webhooks).
    last_event_at           timestamptz,
    last_activity_at        timestamptz NOT NULL DEFAULT now(),
    viewer_count            integer NOT NULL DEFAULT 0 CHECK (viewer_count >= 0),
    peak_viewers            integer NOT NULL DEFAULT 0 CHECK (peak_viewers >= 0),
    total_duration_seconds  bigint NOT NULL DEFAULT 0 CHECK (total_duration_seconds >= 0),
    total_messages          bigint NOT NULL DEFAULT 0 CHECK (total_messages >= 0),
    total_gifts_received    bigint NOT NULL DEFAULT 0 CHECK (total_gifts_received >= 0),
    total_gift_coins        bigint NOT NULL DEFAULT 0 CHECK (total_gift_coins >= 0),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- A price exactly when the session is pay-per-view.
    CHECK ((access_type = 'pay_per_view') = (price_coins IS NOT NULL)),
    -- An ended session says when and why; a running one does neither.
    CHECK ((status = 'ended') = (ended_at IS NOT NULL)),
    CHECK ((status = 'ended') = (end_reason IS NOT NULL)),
    CHECK (status <> 'host_disconnected' OR host_left_at IS NOT NULL)
);
-- At most one non-ended session per creator.
CREATE UNIQUE INDEX live_sessions_one_active_per_creator ON live_sessions (creator_id) WHERE status <> 'ended';
CREATE INDEX live_sessions_creator_id_idx ON live_sessions (creator_id);
CREATE INDEX live_sessions_active_idx ON live_sessions (status, created_at DESC) WHERE status <> 'ended';
CREATE INDEX live_sessions_created_at_idx ON live_sessions (created_at DESC);

-- Presence per (session, user), derived from LiveKit's reports (livekit_participations).
CREATE TABLE live_participants (
    id             uuid PRIMARY KEY,
    session_id     uuid NOT NULL REFERENCES live_sessions (id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES profiles (id),
    role           text NOT NULL CHECK (role IN ('host', 'co_host', 'speaker', 'viewer', 'listener')),
    -- The LiveKit participant sid of the newest connection we know of.
    participant_sid text,
    is_active      boolean NOT NULL DEFAULT false,
    first_joined_at timestamptz,
    joined_at      timestamptz,
    left_at        timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, user_id)
);
CREATE INDEX live_participants_user_id_idx ON live_participants (user_id);
CREATE INDEX live_participants_active_idx ON live_participants (session_id) WHERE is_active;

CREATE TABLE live_messages (
    id          uuid PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES live_sessions (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES profiles (id),
    body        text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    deleted_by  uuid REFERENCES profiles (id)
);
CREATE INDEX live_messages_session_id_idx ON live_messages (session_id, id);
CREATE INDEX live_messages_user_id_idx ON live_messages (user_id);
CREATE INDEX live_messages_deleted_by_idx ON live_messages (deleted_by);

-- The gift catalogue.
CREATE TABLE gift_catalog (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 60),
    coin_price  bigint NOT NULL CHECK (coin_price > 0),
    active      boolean NOT NULL DEFAULT true,
    sort_order  integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO gift_catalog (id, name, coin_price, sort_order) VALUES
    ('0190e7a0-0000-7000-8000-000000000001', 'Rose', 1, 1),
    ('0190e7a0-0000-7000-8000-000000000002', 'Heart', 5, 2),
    ('0190e7a0-0000-7000-8000-000000000003', 'Star', 10, 3),
    ('0190e7a0-0000-7000-8000-000000000004', 'Crown', 100, 4),
    ('0190e7a0-0000-7000-8000-000000000005', 'Rocket', 500, 5);

CREATE TABLE live_gifts (
    id              uuid PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES live_sessions (id),
    sender_id       uuid NOT NULL REFERENCES profiles (id),
    recipient_id    uuid NOT NULL REFERENCES profiles (id),
    gift_id         uuid NOT NULL REFERENCES gift_catalog (id),
    coins           bigint NOT NULL CHECK (coins > 0),
    host_share      bigint NOT NULL CHECK (host_share >= 0),
    platform_share  bigint NOT NULL CHECK (platform_share >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (host_share + platform_share = coins),
    CHECK (sender_id <> recipient_id)
);
CREATE INDEX live_gifts_session_id_idx ON live_gifts (session_id);
CREATE INDEX live_gifts_sender_id_idx ON live_gifts (sender_id);
CREATE INDEX live_gifts_recipient_id_idx ON live_gifts (recipient_id);
CREATE INDEX live_gifts_gift_id_idx ON live_gifts (gift_id);

-- Pay-per-view: one payment per viewer per session, ever.
CREATE TABLE live_payments (
    id          uuid PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES live_sessions (id),
    viewer_id   uuid NOT NULL REFERENCES profiles (id),
    amount      bigint NOT NULL CHECK (amount > 0),
    host_share  bigint NOT NULL CHECK (host_share >= 0 AND host_share <= amount),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, viewer_id)
);
CREATE INDEX live_payments_viewer_id_idx ON live_payments (viewer_id);

-- Stage: host invitations and viewers' requests to join the stage.
CREATE TABLE stage_requests (
    id            uuid PRIMARY KEY,
    session_id    uuid NOT NULL REFERENCES live_sessions (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES profiles (id),
    kind          text NOT NULL CHECK (kind IN ('invitation', 'request')),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'accepted', 'declined', 'expired', 'cancelled')),
    created_by    uuid NOT NULL REFERENCES profiles (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    responded_at  timestamptz,
    CHECK (expires_at > created_at)
);
-- At most one pending invitation or request per user per session.
CREATE UNIQUE INDEX stage_requests_one_pending ON stage_requests (session_id, user_id) WHERE status = 'pending';
CREATE INDEX stage_requests_session_id_idx ON stage_requests (session_id);
CREATE INDEX stage_requests_user_id_idx ON stage_requests (user_id);
CREATE INDEX stage_requests_created_by_idx ON stage_requests (created_by);

-- Idempotency keys of POSTs that move coins: scoped to the user, kept 24 h.
CREATE TABLE idempotency_keys (
    user_id          uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    key              text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash     text NOT NULL,
    response_status  integer,
    response_body    jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
