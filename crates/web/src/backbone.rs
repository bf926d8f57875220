//! What a service that writes events needs before it serves: the database migrated and
//! pooled, NATS connected, the streams created, and the outbox relay running.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::CommonConfig;
use crate::health::{DbCheck, HealthChecks, NatsCheck};
use crate::server::Shutdown;

pub struct Backbone {
    pub pool: db::Pool,
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub subjects: bus::Subjects,
    pub shutdown: Shutdown,
    relay: Option<JoinHandle<()>>,
    pub database_url: String,
}

impl Backbone {
    pub async fn start(config: &CommonConfig) -> anyhow::Result<Self> {
        telemetry::install_crypto_providers();
        telemetry::metrics();
        let applied = db::migrate::run_migrations(&config.database_url).await?;
        if applied > 0 {
            tracing::info!(migrations = applied, "database migrated");
        }
        let pool = db::connect_pool(&config.database_url, config.db_pool_size)?;
        let (nats, js) = bus::connect(&config.nats_url).await?;
        let subjects = bus::Subjects::new(config.nats_namespace.clone());
        subjects.ensure_streams(&js).await?;
        let shutdown = Shutdown::new();
        let relay = bus::relay::spawn_relay(
            pool.clone(),
            config.database_url.clone(),
            js.clone(),
            bus::relay::RelayConfig::default(),
            shutdown.subscribe(),
        );
        Ok(Backbone {
            pool,
            nats,
            js,
            subjects,
            shutdown,
            relay: Some(relay),
            database_url: config.database_url.clone(),
        })
    }

    /// `/health` checks for the database and NATS.
    pub fn health(&self) -> HealthChecks {
        HealthChecks::default()
            .with(DbCheck(self.pool.clone()))
            .with(NatsCheck(self.nats.clone()))
    }

    /// Stops background work: consumers and workers see the switch; the relay flushes the
    /// outbox one last time.
    pub async fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(relay) = self.relay.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), relay).await;
        }
        let _ = self.nats.flush().await;
    }
}
