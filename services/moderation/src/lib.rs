#![doc = include_str!("../README.md")]

pub mod alerts;
mod authz;
pub mod dashboard;
pub mod enforce;
pub mod events;
mod ops;
mod routes;
pub mod stats;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware::from_fn, web as aw};
use tokio::task::JoinHandle;
use web::backbone::Backbone;
use web::config::{CommonConfig, LiveKitConfig};
use web::openapi::BearerAuth;
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
    /// How long terminate and message deletion wait for session-manager to apply them
    /// before answering 202 instead of 200 (`MODERATION_APPLY_WAIT_MS`, default 5000).
    pub apply_wait: Duration,
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
            apply_wait: Duration::from_millis(env_parse("MODERATION_APPLY_WAIT_MS", 5000)?),
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
            apply_wait: Duration::from_secs(5),
        }
    }
}

pub(crate) struct State {
    pub pool: db::Pool,
    pub rooms: Arc<dyn livekit::RoomService>,
    pub subjects: bus::Subjects,
    pub quota_participant_minutes: i64,
    pub quota_concurrent: i64,
    pub apply_wait: Duration,
}

/// The OpenAPI document of the JSON routes, generated from the handlers. The dashboard's
/// page and assets (`/ops`, `/ops/assets/*`, HTML and static files, no data) are not in it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "moderation",
        description = "Moderation and the operators' API (API.md, moderation and operators). \
                       `/v1/ops/*` needs a profile whose role is `admin` or `ops`."
    ),
    paths(
        routes::kick,
        routes::ban,
        routes::unban,
        routes::creator_ban,
        routes::creator_bans,
        routes::creator_unban,
        routes::delete_message,
        routes::report,
        ops::sessions,
        ops::session,
        ops::terminate,
        ops::kick,
        ops::global_ban,
        ops::global_unban,
        ops::bans,
        ops::reports,
        ops::resolve,
        ops::get_config,
        ops::kill_switch,
        stats::usage_route,
        stats::daily,
        stats::top_creators,
        stats::problem_sessions,
        stats::recent_creators,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// What `GET /openapi.json` answers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The moderation and operators' routes of API.md (and a few of ours for the dashboard:
/// `GET /v1/ops/bans`, `GET /v1/ops/config`, `GET /v1/ops/stats/recent-creators`).
fn routes_of(cfg: &mut aw::ServiceConfig) {
    cfg.route(
        "/v1/moderation/sessions/{id}/kick",
        aw::post().to(routes::kick),
    )
    .route(
        "/v1/moderation/sessions/{id}/bans",
        aw::post().to(routes::ban),
    )
    .route(
        "/v1/moderation/sessions/{id}/bans/{userId}",
        aw::delete().to(routes::unban),
    )
    .route(
        "/v1/moderation/creator-bans",
        aw::post().to(routes::creator_ban),
    )
    .route(
        "/v1/moderation/creator-bans",
        aw::get().to(routes::creator_bans),
    )
    .route(
        "/v1/moderation/creator-bans/{userId}",
        aw::delete().to(routes::creator_unban),
    )
    .route(
        "/v1/moderation/messages/{messageId}",
        aw::delete().to(routes::delete_message),
    )
    .route("/v1/reports", aw::post().to(routes::report))
    .route("/v1/ops/sessions", aw::get().to(ops::sessions))
    .route("/v1/ops/sessions/{id}", aw::get().to(ops::session))
    .route(
        "/v1/ops/sessions/{id}/terminate",
        aw::post().to(ops::terminate),
    )
    .route(
        "/v1/ops/participants/{sessionId}/{userId}/kick",
        aw::post().to(ops::kick),
    )
    .route("/v1/ops/users/{userId}/ban", aw::post().to(ops::global_ban))
    .route(
        "/v1/ops/users/{userId}/ban",
        aw::delete().to(ops::global_unban),
    )
    .route("/v1/ops/bans", aw::get().to(ops::bans))
    .route("/v1/ops/reports", aw::get().to(ops::reports))
    .route("/v1/ops/reports/{id}/resolve", aw::post().to(ops::resolve))
    .route("/v1/ops/config", aw::get().to(ops::get_config))
    .route(
        "/v1/ops/config/live-sessions-disabled",
        aw::put().to(ops::kill_switch),
    )
    .route("/v1/ops/usage", aw::get().to(stats::usage_route))
    .route("/v1/ops/stats/daily", aw::get().to(stats::daily))
    .route(
        "/v1/ops/stats/top-creators",
        aw::get().to(stats::top_creators),
    )
    .route(
        "/v1/ops/stats/problem-sessions",
        aw::get().to(stats::problem_sessions),
    )
    .route(
        "/v1/ops/stats/recent-creators",
        aw::get().to(stats::recent_creators),
    );
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
        let mut tasks = Vec::new();
        tasks.push(
            bus::consumer::spawn_consumer(
                backbone.js.clone(),
                backbone.subjects.clone(),
                {
                    let mut spec =
                        bus::consumer::ConsumerSpec::new(enforce::CONSUMER, bus::Family::LiveKit);
                    spec.event_types = vec!["livekit.participant_joined".into()];
                    spec
                },
                Arc::new(enforce::BanEnforcer {
                    pool: backbone.pool.clone(),
                    rooms: rooms.clone(),
                    subjects: backbone.subjects.clone(),
                }),
                backbone.shutdown.subscribe(),
            )
            .await?,
        );
        let checker = alerts::Alerts::new(
            config.alerts.clone(),
            config.quota_participant_minutes,
            config.quota_concurrent,
        );
        if config.alerts.webhook_url.is_none() {
            tracing::warn!("ALERT_WEBHOOK_URL is not set: alerts are only logged");
        }
        if config.alerts.token_metrics_urls.is_empty() {
            tracing::warn!("TOKEN_ISSUER_METRICS_URLS is not set: the token-failure alert is off");
        }
        tasks.push(bus::deadlines::spawn_worker(
            backbone.pool.clone(),
            backbone.database_url.clone(),
            vec![alerts::KIND.to_owned()],
            Arc::new(alerts::AlertTimer { alerts: checker }),
            backbone.shutdown.subscribe(),
        ));
        // One pending check at a time (a deadline row): whichever replica claims it runs the
        // round, so an alert is sent once however many replicas run.
        tasks.push(bus::deadlines::keep_scheduled(
            backbone.pool.clone(),
            alerts::KIND,
            alerts::SUBJECT,
            config.alerts.check_interval,
            backbone.shutdown.subscribe(),
        ));
        let health = aw::Data::new(
            backbone
                .health()
                .with(web::health::LiveKitCheck(rooms.clone())),
        );
        let state = aw::Data::new(State {
            pool: backbone.pool.clone(),
            rooms,
            subjects: backbone.subjects.clone(),
            quota_participant_minutes: config.quota_participant_minutes,
            quota_concurrent: config.quota_concurrent,
            apply_wait: config.apply_wait,
        });
        let verifier = aw::Data::new(web::Verifier(auth::JwtVerifier::hs256(
            config.common.jwt_secret.expose().as_bytes(),
        )));
        let max_body = config.common.max_body_bytes;
        let port = listener.local_addr()?.port();
        let doc = openapi();
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
                .configure(routes_of)
                .configure(web::openapi::route(doc.clone()))
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
