#![doc = include_str!("../README.md")]

mod routes;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware::from_fn, web as aw};
use web::client_ip::TrustedProxies;
use web::config::{CommonConfig, LiveKitConfig};
use web::health::{DbCheck, HealthChecks, NatsCheck};
use web::openapi::BearerAuth;
use web::rate_limit::KeyedLimiter;
use web::server::env_parse;

/// The service's OpenAPI document, generated from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "token-issuer", description = "LiveKit access tokens for sessions and calls (API.md)"),
    paths(routes::issue),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The document served at `GET /openapi.json` (title = the service, version = the crate's).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.info.license = None; // utoipa fills an empty one from Cargo's (unset) `license`
    doc
}

/// The token-issuer's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub livekit: LiveKitConfig,
    /// Lifetime of the LiveKit tokens handed out (`TOKEN_TTL_SECONDS`, default 6 h).
    pub token_ttl: Duration,
    /// `RATE_LIMIT_USER_PER_MIN` (default 60).
    pub rate_user_per_min: u32,
    /// `RATE_LIMIT_IP_PER_MIN` (default 600: carriers put many users behind one address).
    pub rate_ip_per_min: u32,
    /// The host's share of a pay-per-view price (`GIFT_CREATOR_SHARE_PERCENT`, default 70).
    pub creator_share_percent: u8,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let share: u8 = env_parse("GIFT_CREATOR_SHARE_PERCENT", 70)?;
        anyhow::ensure!(share <= 100, "GIFT_CREATOR_SHARE_PERCENT must be 0..=100");
        Ok(Config {
            common: CommonConfig::from_env("token-issuer", 8081)?,
            livekit: LiveKitConfig::from_env()?,
            token_ttl: Duration::from_secs(env_parse("TOKEN_TTL_SECONDS", 6 * 3600)?),
            rate_user_per_min: env_parse("RATE_LIMIT_USER_PER_MIN", 60)?,
            rate_ip_per_min: env_parse("RATE_LIMIT_IP_PER_MIN", 600)?,
            creator_share_percent: share,
        })
    }
}

/// Shared by every request.
pub(crate) struct State {
    pub pool: db::Pool,
    pub livekit: livekit::Credentials,
    pub ws_url: String,
    pub token_ttl: Duration,
    pub per_user: KeyedLimiter<uuid::Uuid>,
    pub per_ip: KeyedLimiter<std::net::IpAddr>,
    pub proxies: TrustedProxies,
    pub verifier: auth::JwtVerifier,
    pub creator_share_percent: u8,
}

/// The running service.
pub struct Application {
    port: u16,
    server: Server,
    state: Arc<State>,
}

impl Application {
    /// Migrates the database, connects, binds (`HTTP_PORT`; 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = web::server::bind(config.common.http_port)?;
        Self::build_with_listener(config, listener).await
    }

    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        telemetry::install_crypto_providers();
        telemetry::metrics(); // the recorder must exist before the first counter
        let common = &config.common;
        db::migrate::run_migrations(&common.database_url).await?;
        let pool = db::connect_pool(&common.database_url, common.db_pool_size)?;
        let (nats, _js) = bus::connect(&common.nats_url).await?;
        let state = Arc::new(State {
            pool: pool.clone(),
            livekit: config.livekit.credentials(),
            ws_url: config.livekit.ws_url.clone(),
            token_ttl: config.token_ttl,
            per_user: KeyedLimiter::per_minute(config.rate_user_per_min),
            per_ip: KeyedLimiter::per_minute(config.rate_ip_per_min),
            proxies: common.trusted_proxies.clone(),
            verifier: auth::JwtVerifier::hs256(common.jwt_secret.expose().as_bytes()),
            creator_share_percent: config.creator_share_percent,
        });
        let port = listener.local_addr()?.port();
        let health = HealthChecks::default()
            .with(DbCheck(pool))
            .with(NatsCheck(nats));
        let data = aw::Data::from(state.clone());
        let max_body = common.max_body_bytes;
        let doc = openapi();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(web::middleware::observe))
                .app_data(data.clone())
                .app_data(aw::Data::new(health.clone()))
                .app_data(web::extract::json_config(max_body))
                .app_data(web::extract::query_config())
                .app_data(web::extract::path_config())
                .configure(web::health::routes)
                .configure(web::openapi::route(doc.clone()))
                .route("/v1/tokens", aw::post().to(routes::issue))
                .default_service(aw::to(web::extract::not_found))
        })
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `stop` resolves, then stops accepting and finishes in-flight requests.
    pub async fn run_until_stopped(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let upkeep = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                state.per_user.shrink();
                state.per_ip.shrink();
            }
        });
        web::server::serve_until(self.server, stop).await;
        upkeep.abort();
        Ok(())
    }
}
