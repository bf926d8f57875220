-- The outbox relay and the deadline workers are woken in-process by the code that wrote
-- the row (bus::wake), and poll as a fallback. The NOTIFY triggers go: a transaction that
-- NOTIFYs takes a database-wide lock held through its commit, so every transaction that
-- wrote an event or a deadline committed one after the other (measured: most of the call
-- storm's waits were `Lock:object` on COMMIT).
DROP TRIGGER outbox_notify ON outbox;
DROP TRIGGER deadlines_notify ON deadlines;
