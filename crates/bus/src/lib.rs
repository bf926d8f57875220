#![doc = include_str!("../README.md")]

pub mod consumer;
pub mod deadlines;
pub mod envelope;
mod listen;
pub mod outbox;
pub mod relay;
pub mod subjects;
pub mod trace;
mod wake;

/// The generated protobuf types of `proto/events.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/ipelya.events.v1.rs"));
}

pub use envelope::{Event, Incoming};
pub use subjects::{Family, Subjects};

/// Connects to NATS and returns the JetStream context.
pub async fn connect(
    url: &str,
) -> anyhow::Result<(async_nats::Client, async_nats::jetstream::Context)> {
    let client = async_nats::ConnectOptions::new()
        .name("ipelya-live")
        .retry_on_initial_connect()
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await?;
    let js = async_nats::jetstream::new(client.clone());
    Ok((client, js))
}
