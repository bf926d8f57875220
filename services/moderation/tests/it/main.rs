//! moderation on real HTTP with livekit-sim, session-manager, token-issuer and
//! webhook-ingest, a database and a NATS namespace of its own (`support::stack()`).

mod alerts;
mod dashboard;
mod e2e;
mod harness;
mod openapi;
mod routes;
mod usage;
// Not every test module uses every helper of the harness.
#[allow(dead_code)]
pub mod support;
