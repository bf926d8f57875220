#![doc = include_str!("../README.md")]

mod batch;
mod ingest;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware::from_fn, web as aw};
use web::backbone::Backbone;
use web::config::{CommonConfig, LiveKitConfig};
use web::openapi::BearerAuth;

/// The service's OpenAPI document, generated from the handler's annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "webhook-ingest", description = "LiveKit's webhooks in, events out (API.md)"),
    paths(ingest::receive),
    modifiers(&BearerAuth, &LiveKitSignature)
)]
struct ApiDoc;

/// The document served at `GET /openapi.json` (title = the service, version = the crate's).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.info.license = None; // utoipa fills an empty one from Cargo's (unset) `license`
    doc
}

/// The `livekitWebhook` scheme: not the app's bearer token but LiveKit's own signature, a
/// JWT in `Authorization` (raw, or after `Bearer `) signed with the LiveKit API secret, whose
/// `sha256` claim is the base64 SHA-256 of the exact body.
struct LiveKitSignature;

impl utoipa::Modify for LiveKitSignature {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "livekitWebhook",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "Authorization",
                    "LiveKit's webhook signature: an HS256 JWT (API key as `iss`, signed with \
                     the API secret) whose `sha256` claim is the base64 SHA-256 of the raw body",
                ))),
            );
    }
}

/// The webhook-ingest's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub livekit: LiveKitConfig,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Config {
            common: CommonConfig::from_env("webhook-ingest", 8085)?,
            livekit: LiveKitConfig::from_env()?,
        })
    }
}

pub(crate) struct State {
    pub livekit: livekit::Credentials,
    pub max_body_bytes: usize,
    pub batcher: batch::Batcher,
}

/// The running service.
pub struct Application {
    port: u16,
    server: Server,
    backbone: Backbone,
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
        let state = Arc::new(State {
            livekit: config.livekit.credentials(),
            max_body_bytes: config.common.max_body_bytes,
            batcher: batch::Batcher::spawn(backbone.pool.clone(), backbone.subjects.clone()),
        });
        let data = aw::Data::from(state);
        let health = aw::Data::new(backbone.health());
        let port = listener.local_addr()?.port();
        let doc = openapi();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(web::middleware::observe))
                .app_data(data.clone())
                .app_data(health.clone())
                .configure(web::health::routes)
                .configure(web::openapi::route(doc.clone()))
                .route("/webhooks/livekit", aw::post().to(ingest::receive))
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
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `stop` resolves; then finishes in-flight requests and flushes the outbox.
    pub async fn run_until_stopped(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        web::server::serve_until(self.server, stop).await;
        self.backbone.stop().await;
        Ok(())
    }
}
