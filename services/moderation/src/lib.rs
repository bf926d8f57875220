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

/// The moderation service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub livekit: LiveKitConfig,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Config {
            common: CommonConfig::from_env("moderation", 8084)?,
            livekit: LiveKitConfig::from_env()?,
        })
    }
}

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
