//! Query functions, one module per area. Each takes `&mut AsyncPgConnection` so the caller
//! decides the transaction.

pub mod access;
pub mod calls;
pub mod chat;
pub mod config;
pub mod gifts;
pub mod idempotency;
pub mod moderation;
pub mod profiles;
pub mod push;
pub mod sessions;
pub mod stage;
pub mod stream;
pub mod usage;
pub mod webhooks;
