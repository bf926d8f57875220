//! In-process wake-ups of the outbox relay and the deadline worker.
//!
//! The code that writes an outbox row or a deadline pokes these; the relay and the worker
//! of the same process look at once and again a few times shortly after (the writing
//! transaction commits a moment later), and poll as a fallback for rows other processes
//! wrote. This replaces `NOTIFY` triggers: a PostgreSQL transaction that notifies takes a
//! database-wide lock that it holds through its commit, which serialised every commit that
//! wrote an event. Process-wide on purpose: one process has one database and one relay per
//! service it runs.

use std::time::Duration;

use tokio::sync::Notify;

pub(crate) static OUTBOX: Notify = Notify::const_new();
pub(crate) static DEADLINES: Notify = Notify::const_new();

/// Pauses after a local write: the writer's transaction usually commits within a few ms.
pub(crate) const AFTER_WRITE: [Duration; 5] = [
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(15),
    Duration::from_millis(40),
    Duration::from_millis(100),
];
