-- The three mechanisms of "nothing lost, nothing twice" (DESIGN.md) and LiveKit's record.

-- Every verified LiveKit webhook, once by its id (webhook-ingest).
CREATE TABLE webhook_events (
    id                text PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 128),
    event             text NOT NULL,
    room_name         text,
    participant_sid   text,
    identity          text,
    -- LiveKit's createdAt (when the event happened), not when it arrived.
    occurred_at       timestamptz NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),
    payload           jsonb NOT NULL
);
CREATE INDEX webhook_events_room_name_idx ON webhook_events (room_name, occurred_at);
CREATE INDEX webhook_events_received_at_idx ON webhook_events (received_at);

-- One row per LiveKit connection (participant sid): joined and left times from LiveKit's
-- event times. Either event may arrive first; the row is the union of what arrived.
-- Usage accounting and presence are computed from it.
CREATE TABLE livekit_participations (
    participant_sid  text PRIMARY KEY,
    room_name        text NOT NULL,
    identity         text NOT NULL,
    joined_at        timestamptz,
    left_at          timestamptz,
    left_reason      text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX livekit_participations_room_identity_idx ON livekit_participations (room_name, identity);
CREATE INDEX livekit_participations_joined_at_idx ON livekit_participations (joined_at);

-- Transactional outbox: written with the state change, published by the relay.
CREATE TABLE outbox (
    id            uuid PRIMARY KEY,          -- the event id, UUIDv7: sorts by time
    subject       text NOT NULL,
    payload       bytea NOT NULL,
    headers       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    attempts      integer NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE FUNCTION outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Idempotent consumers: (consumer, event) recorded with the effect.
CREATE TABLE processed_events (
    consumer      text NOT NULL,
    event_id      uuid NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);

-- Durable deadlines: claimed with FOR UPDATE SKIP LOCKED, fired once.
CREATE TABLE deadlines (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL,
    subject_id    uuid NOT NULL,
    due_at        timestamptz NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    fired_at      timestamptz,
    cancelled_at  timestamptz,
    outcome       text,
    CHECK (fired_at IS NULL OR cancelled_at IS NULL)
);
CREATE INDEX deadlines_pending_idx ON deadlines (due_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX deadlines_subject_idx ON deadlines (kind, subject_id);
-- At most one pending deadline of a kind for a subject.
CREATE UNIQUE INDEX deadlines_one_pending_per_subject ON deadlines (kind, subject_id)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;

CREATE FUNCTION deadlines_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('deadlines', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER deadlines_notify AFTER INSERT ON deadlines
    FOR EACH STATEMENT EXECUTE FUNCTION deadlines_notify();
