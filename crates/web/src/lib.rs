#![doc = include_str!("../README.md")]

pub mod backbone;
pub mod client_ip;
pub mod config;
pub mod cursor;
pub mod error;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod middleware;
pub mod openapi;
pub mod rate_limit;
pub mod server;

pub use error::{ApiError, ApiResult};
pub use extract::{AuthUser, Verifier};
