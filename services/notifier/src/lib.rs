#![doc = include_str!("../README.md")]

pub mod devices;
pub mod push;
pub mod stream;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware::from_fn, web as aw};
use tokio::task::JoinHandle;
use web::backbone::Backbone;
use web::config::CommonConfig;
use web::openapi::BearerAuth;

/// The service's OpenAPI document, generated from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "notifier", description = "Push devices and each user's event stream (API.md)"),
    paths(devices::register, devices::unregister, stream::events),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The document served at `GET /openapi.json` (title = the service, version = the crate's).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.info.license = None; // utoipa fills an empty one from Cargo's (unset) `license`
    doc
}

/// The notifier's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub push: push::PushConfig,
    pub stream: stream::StreamConfig,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Config {
            common: CommonConfig::from_env("notifier", 8086)?,
            push: push::PushConfig::from_env()?,
            stream: stream::StreamConfig::from_env()?,
        })
    }
}

/// Shared by the device routes.
pub(crate) struct State {
    pub pool: db::Pool,
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
        let mut tasks = Vec::new();
        tasks.extend(push::start(&backbone, &config.push).await?);
        let (hub, stream_tasks) = stream::start(&backbone, &config.stream).await?;
        tasks.extend(stream_tasks);
        let state = aw::Data::new(State {
            pool: backbone.pool.clone(),
        });
        let hub = aw::Data::from(hub);
        let verifier = aw::Data::new(web::Verifier(auth::JwtVerifier::hs256(
            config.common.jwt_secret.expose().as_bytes(),
        )));
        let health = aw::Data::new(backbone.health());
        let max_body = config.common.max_body_bytes;
        let port = listener.local_addr()?.port();
        let doc = openapi();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(web::middleware::observe))
                .app_data(state.clone())
                .app_data(hub.clone())
                .app_data(verifier.clone())
                .app_data(health.clone())
                .app_data(web::extract::json_config(max_body))
                .app_data(web::extract::query_config())
                .app_data(web::extract::path_config())
                .configure(web::health::routes)
                .configure(web::openapi::route(doc.clone()))
                .configure(devices::routes)
                .configure(stream::routes)
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

    /// Serves until `stop`; then stops accepting, closes the event streams, stops the push
    /// consumers and flushes the outbox.
    pub async fn run_until_stopped(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        // Open SSE streams would hold the graceful stop for its whole timeout: the switch
        // flips first (the hub closes the streams, consumers stop), then the server stops.
        let shutdown = self.backbone.shutdown.clone();
        let stop = async move {
            stop.await;
            shutdown.trigger();
        };
        web::server::serve_until(self.server, stop).await;
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.backbone.stop().await;
        Ok(())
    }
}
