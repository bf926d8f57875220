DROP TRIGGER IF EXISTS deadlines_notify ON deadlines;
DROP FUNCTION IF EXISTS deadlines_notify();
DROP TABLE IF EXISTS deadlines;
DROP TABLE IF EXISTS processed_events;
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
DROP FUNCTION IF EXISTS outbox_notify();
DROP TABLE IF EXISTS outbox;
DROP TABLE IF EXISTS livekit_participations;
DROP TABLE IF EXISTS webhook_events;
