#![doc = include_str!("../README.md")]

pub mod lifecycle;
pub mod push_results;
pub mod reconcile;
pub mod room_events;
mod routes;
pub mod timers;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware::from_fn, web as aw};
use tokio::task::JoinHandle;
use web::backbone::Backbone;
use web::config::{CommonConfig, LiveKitConfig};
use web::openapi::BearerAuth;
use web::server::env_parse;

use crate::lifecycle::{Ctx, Timings, kinds};

/// The call-signaling's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub livekit: LiveKitConfig,
    pub timings: Timings,
}

fn secs(name: &str, default: Duration) -> anyhow::Result<Duration> {
    Ok(Duration::from_secs(env_parse(name, default.as_secs())?))
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Timings::default();
        Ok(Config {
            common: CommonConfig::from_env("call-signaling", 8083)?,
            livekit: LiveKitConfig::from_env()?,
            timings: Timings {
                push_timeout: secs("CALL_PUSH_TIMEOUT_SECONDS", d.push_timeout)?,
                ring_timeout: secs("CALL_RING_TIMEOUT_SECONDS", d.ring_timeout)?,
                join_timeout: secs("CALL_JOIN_TIMEOUT_SECONDS", d.join_timeout)?,
                party_grace: secs("CALL_PARTY_GRACE_SECONDS", d.party_grace)?,
                max_duration: secs("CALL_MAX_SECONDS", d.max_duration)?,
                reconcile_every: secs("RECONCILE_INTERVAL_SECONDS", d.reconcile_every)?,
            },
        })
    }
}

/// The OpenAPI document of the call routes, generated from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "call-signaling", description = "Private 1-1 calls (API.md, call-signaling)."),
    paths(
        routes::initiate,
        routes::history,
        routes::get,
        routes::accept,
        routes::reject,
        routes::cancel,
        routes::end,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// What `GET /openapi.json` answers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

pub(crate) struct State {
    pub ctx: Ctx,
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
        let ctx = Ctx {
            subjects: backbone.subjects.clone(),
            rooms,
            timings: config.timings.clone(),
            pool: backbone.pool.clone(),
        };
        let mut tasks = vec![
            bus::consumer::spawn_consumer(
                backbone.js.clone(),
                backbone.subjects.clone(),
                bus::consumer::ConsumerSpec::new(room_events::CONSUMER, bus::Family::LiveKit),
                Arc::new(room_events::RoomEvents { ctx: ctx.clone() }),
                backbone.shutdown.subscribe(),
            )
            .await?,
            bus::consumer::spawn_consumer(
                backbone.js.clone(),
                backbone.subjects.clone(),
                bus::consumer::ConsumerSpec {
                    event_types: vec![push_results::PUSH_RESULT.to_owned()],
                    ..bus::consumer::ConsumerSpec::new(push_results::CONSUMER, bus::Family::Notify)
                },
                Arc::new(push_results::PushResults { ctx: ctx.clone() }),
                backbone.shutdown.subscribe(),
            )
            .await?,
            bus::deadlines::spawn_worker(
                backbone.pool.clone(),
                backbone.database_url.clone(),
                kinds::ALL.iter().map(|k| k.to_string()).collect(),
                Arc::new(timers::Timers { ctx: ctx.clone() }),
                backbone.shutdown.subscribe(),
            ),
        ];
        tasks.push(bus::deadlines::keep_scheduled(
            backbone.pool.clone(),
            kinds::RECONCILE,
            reconcile::SUBJECT,
            ctx.timings.reconcile_every,
            backbone.shutdown.subscribe(),
        ));
        let health = aw::Data::new(
            backbone
                .health()
                .with(web::health::LiveKitCheck(ctx.rooms.clone())),
        );
        let state = aw::Data::new(State { ctx });
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
                .configure(web::openapi::route(doc.clone()))
                .route("/v1/calls", aw::post().to(routes::initiate))
                .route("/v1/calls", aw::get().to(routes::history))
                .route("/v1/calls/{id}", aw::get().to(routes::get))
                .route("/v1/calls/{id}/accept", aw::post().to(routes::accept))
                .route("/v1/calls/{id}/reject", aw::post().to(routes::reject))
                .route("/v1/calls/{id}/cancel", aw::post().to(routes::cancel))
                .route("/v1/calls/{id}/end", aw::post().to(routes::end))
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
    /// consumers and the deadline worker, and flushes the outbox.
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
