//! moderation on real HTTP with livekit-sim, a database and a NATS namespace of its own.

mod dashboard;
