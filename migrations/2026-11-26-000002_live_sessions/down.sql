DROP TABLE IF EXISTS idempotency_keys;
DROP TABLE IF EXISTS stage_requests;
DROP TABLE IF EXISTS live_payments;
DROP TABLE IF EXISTS live_gifts;
DROP TABLE IF EXISTS gift_catalog;
DROP TABLE IF EXISTS live_messages;
DROP TABLE IF EXISTS live_participants;
DROP TABLE IF EXISTS live_sessions;
