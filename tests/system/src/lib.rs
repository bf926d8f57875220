//! Whole-system test support: every service and livekit-sim as its own process (built by
//! cargo into the target directory), on ports of their own, against a database and a NATS
//! namespace of their own; the real nginx gateway in front (`gateway`); and, for the fault
//! suite, a PostgreSQL cluster and a NATS server of its own that can be restarted (`infra`).

pub mod gateway;
pub mod otlp;
pub mod stack;

pub use gateway::{Gateway, GatewayConfig};
pub use stack::{Stack, StackConfig, Svc};
