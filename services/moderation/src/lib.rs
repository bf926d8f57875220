#![doc = include_str!("../README.md")]

pub mod dashboard;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware::from_fn, web as aw};
use tokio::task::JoinHandle;
use web::backbone::Backbone;
use web::config::{CommonConfig, LiveKitConfig};
use web::server::{env_or, env_parse};

/// The moderation service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub livekit: LiveKitConfig,
    /// Monthly participant minutes the usage is held against
    /// (`LIVEKIT_QUOTA_PARTICIPANT_MINUTES`, default 5000).
    pub quota_participant_minutes: i64,
    /// Concurrent participants the peak is held against (`LIVEKIT_QUOTA_CONCURRENT`, 100).
    pub quota_concurrent: i64,
    /// The alert checks.
    pub alerts: AlertConfig,
    /// How long `POST /v1/ops/sessions/{id}/terminate` waits for session-manager to end the
    /// session before answering 202 (`TERMINATE_WAIT_MS`, default 5000).
    pub terminate_wait: Duration,
}

/// What the periodic alert check needs.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// Slack/Discord-compatible target (`ALERT_WEBHOOK_URL`); none: alerts are only logged.
    pub webhook_url: Option<String>,
    /// `ALERT_CHECK_INTERVAL_SECONDS` (default 300).
    pub check_interval: Duration,
    /// A non-ended session with no active participant for this long counts as orphaned
    /// (`ORPHAN_AFTER_SECONDS`, default 1800, the same variable session-manager sweeps with).
    pub orphan_after: Duration,
    /// token-issuer replicas' `/metrics` URLs (`TOKEN_ISSUER_METRICS_URLS`, comma separated):
    /// the token-failure rule reads `token_failures_total` there. Empty: the rule is off.
    pub token_metrics_urls: Vec<String>,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let secs = |name: &str, default: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_secs(env_parse(name, default)?))
        };
        let interval = secs("ALERT_CHECK_INTERVAL_SECONDS", 300)?;
        anyhow::ensure!(
            !interval.is_zero(),
            "ALERT_CHECK_INTERVAL_SECONDS must be positive"
        );
        Ok(Config {
            common: CommonConfig::from_env("moderation", 8084)?,
            livekit: LiveKitConfig::from_env()?,
            quota_participant_minutes: env_parse("LIVEKIT_QUOTA_PARTICIPANT_MINUTES", 5000)?,
            quota_concurrent: env_parse("LIVEKIT_QUOTA_CONCURRENT", 100)?,
            alerts: AlertConfig {
                webhook_url: std::env::var("ALERT_WEBHOOK_URL")
                    .ok()
                    .filter(|v| !v.is_empty()),
                check_interval: interval,
                orphan_after: secs("ORPHAN_AFTER_SECONDS", 1800)?,
                token_metrics_urls: env_or("TOKEN_ISSUER_METRICS_URLS", "")
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            terminate_wait: Duration::from_millis(env_parse("TERMINATE_WAIT_MS", 5000)?),
        })
    }

    /// The defaults of `from_env` around a given common and LiveKit configuration (tests).
    pub fn for_tests(common: CommonConfig, livekit: LiveKitConfig) -> Self {
        Config {
            common,
            livekit,
            quota_participant_minutes: 5000,
            quota_concurrent: 100,
            alerts: AlertConfig {
                webhook_url: None,
                check_interval: Duration::from_secs(300),
                orphan_after: Duration::from_secs(1800),
                token_metrics_urls: Vec::new(),
            },
            terminate_wait: Duration::from_secs(5),
        }
    }
}

#[allow(dead_code)] // read by the routes that land next
pub(crate) struct State {
    pub pool: db::Pool,
    pub rooms: Arc<dyn livekit::RoomService>,
}

/// The running service.
pub struct Application {
    port: u16,
    server: Server,
    backbone: Backbone,
    tasks: Vec<JoinHandle<()>>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = web::server::bind(config.common.http_port)?;
        Self::build_with_listener(config, listener).await
    }

    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let backbone = Backbone::start(&config.common).await?;
        let rooms: Arc<dyn livekit::RoomService> = Arc::new(livekit::LiveKitRooms::new(
            &config.livekit.url,
            &config.livekit.credentials(),
        ));
        let tasks = Vec::new();
        let health = aw::Data::new(
            backbone
                .health()
                .with(web::health::LiveKitCheck(rooms.clone())),
        );
        let state = aw::Data::new(State {
            pool: backbone.pool.clone(),
            rooms,
        });
        let verifier = aw::Data::new(web::Verifier(auth::JwtVerifier::hs256(
            config.common.jwt_secret.expose().as_bytes(),
        )));
        let max_body = config.common.max_body_bytes;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(web::middleware::observe))
                .app_data(state.clone())
                .app_data(verifier.clone())
                .app_data(health.clone())
                .app_data(web::extract::json_config(max_body))
                .app_data(web::extract::query_config())
                .app_data(web::extract::path_config())
                .configure(web::health::routes)
                .configure(dashboard::routes)
                .default_service(aw::to(web::extract::not_found))
        })
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            backbone,
            tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `stop`; then stops accepting, finishes in-flight requests, stops the
    /// background work and flushes the outbox.
    pub async fn run_until_stopped(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        web::server::serve_until(self.server, stop).await;
        self.backbone.shutdown.trigger();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.backbone.stop().await;
        Ok(())
    }
}
