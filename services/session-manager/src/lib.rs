#![doc = include_str!("../README.md")]

mod api;
mod chat;
mod gifts;
pub mod lifecycle;
pub mod moderation;
pub mod presence;
mod routes;
mod stage;
pub mod timers;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware::from_fn, web as aw};
use tokio::task::JoinHandle;
use web::backbone::Backbone;
use web::config::{CommonConfig, LiveKitConfig};
use web::server::env_parse;

use crate::lifecycle::{Ctx, Timings, kinds};

pub use crate::api::openapi;

/// The session-manager's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub livekit: LiveKitConfig,
    pub timings: Timings,
    pub max_guests_video: i32,
    pub max_speakers_audio: i32,
    /// `STAGE_INVITATION_TTL_SECONDS`: stage invitations and requests expire after it.
    pub stage_ttl: Duration,
    /// `CHAT_RATE_PER_MIN`: chat messages per user per session (token bucket, same burst).
    pub chat_rate_per_min: u32,
    /// `GIFT_CREATOR_SHARE_PERCENT`: the host's share of a gift.
    pub gift_share_percent: u8,
}

fn secs(name: &str, default: u64) -> anyhow::Result<Duration> {
    Ok(Duration::from_secs(env_parse(name, default)?))
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Config {
            common: CommonConfig::from_env("session-manager", 8082)?,
            livekit: LiveKitConfig::from_env()?,
            timings: Timings {
                host_grace: secs("HOST_GRACE_SECONDS", 30)?,
                no_show: secs("SESSION_NO_SHOW_SECONDS", 600)?,
                max_duration: secs("SESSION_MAX_SECONDS", 14_400)?,
                orphan_after: secs("ORPHAN_AFTER_SECONDS", 1800)?,
                reconcile_every: secs("RECONCILE_INTERVAL_SECONDS", 60)?,
            },
            max_guests_video: env_parse("STAGE_MAX_GUESTS_VIDEO", 3)?,
            max_speakers_audio: env_parse("STAGE_MAX_SPEAKERS_AUDIO", 10)?,
            stage_ttl: secs("STAGE_INVITATION_TTL_SECONDS", 60)?,
            chat_rate_per_min: env_parse("CHAT_RATE_PER_MIN", 20)?,
            gift_share_percent: {
                let share: u8 = env_parse("GIFT_CREATOR_SHARE_PERCENT", 70)?;
                anyhow::ensure!(share <= 100, "GIFT_CREATOR_SHARE_PERCENT must be 0..=100");
                share
            },
        })
    }
}

pub(crate) struct State {
    pub ctx: Ctx,
    pub max_guests_video: i32,
    pub max_speakers_audio: i32,
    pub stage_ttl: Duration,
    pub chat: chat::Chat,
    pub gift_share_percent: u8,
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
        let mut tasks = Vec::new();
        tasks.push(
            bus::consumer::spawn_consumer(
                backbone.js.clone(),
                backbone.subjects.clone(),
                bus::consumer::ConsumerSpec::new(presence::CONSUMER, bus::Family::LiveKit),
                Arc::new(presence::LiveKitEvents { ctx: ctx.clone() }),
                backbone.shutdown.subscribe(),
            )
            .await?,
        );
        // moderation's decisions about sessions and chat (terminate, message deletion)
        tasks.push(
            bus::consumer::spawn_consumer(
                backbone.js.clone(),
                backbone.subjects.clone(),
                bus::consumer::ConsumerSpec {
                    event_types: moderation::EVENTS.iter().map(|e| e.to_string()).collect(),
                    ..bus::consumer::ConsumerSpec::new(
                        moderation::CONSUMER,
                        bus::Family::Moderation,
                    )
                },
                Arc::new(moderation::ModerationEvents { ctx: ctx.clone() }),
                backbone.shutdown.subscribe(),
            )
            .await?,
        );
        tasks.push(bus::deadlines::spawn_worker(
            backbone.pool.clone(),
            backbone.database_url.clone(),
            kinds::ALL.iter().map(|k| k.to_string()).collect(),
            Arc::new(timers::Timers { ctx: ctx.clone() }),
            backbone.shutdown.subscribe(),
        ));
        tasks.push(bus::deadlines::keep_scheduled(
            backbone.pool.clone(),
            kinds::RECONCILE,
            timers::RECONCILE_SUBJECT,
            ctx.timings.reconcile_every,
            backbone.shutdown.subscribe(),
        ));
        let chat = chat::Chat::new(config.chat_rate_per_min);
        tasks.push(chat.spawn_shrink(backbone.shutdown.subscribe()));
        tasks.push(web::idempotency::spawn_purge(
            backbone.pool.clone(),
            backbone.shutdown.subscribe(),
        ));
        let state = aw::Data::new(State {
            ctx,
            max_guests_video: config.max_guests_video,
            max_speakers_audio: config.max_speakers_audio,
            stage_ttl: config.stage_ttl,
            chat,
            gift_share_percent: config.gift_share_percent,
        });
        let verifier = aw::Data::new(web::Verifier(auth::JwtVerifier::hs256(
            config.common.jwt_secret.expose().as_bytes(),
        )));
        let health = aw::Data::new(
            backbone
                .health()
                .with(web::health::LiveKitCheck(state.ctx.rooms.clone())),
        );
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
                .route("/v1/sessions", aw::post().to(routes::create))
                .route("/v1/sessions", aw::get().to(routes::list))
                .route("/v1/sessions/{id}", aw::get().to(routes::get))
                .route("/v1/sessions/{id}/leave", aw::post().to(routes::leave))
                .route("/v1/sessions/{id}/end", aw::post().to(routes::end))
                .route("/v1/sessions/{id}/pause", aw::post().to(routes::pause))
                .route("/v1/sessions/{id}/resume", aw::post().to(routes::resume))
                // the stage
                .route(
                    "/v1/sessions/{id}/guests/invite",
                    aw::post().to(stage::invite),
                )
                .route(
                    "/v1/sessions/{id}/guests/invitations/{invitationId}/respond",
                    aw::post().to(stage::respond_invitation),
                )
                .route(
                    "/v1/sessions/{id}/guests/requests",
                    aw::post().to(stage::request),
                )
                .route(
                    "/v1/sessions/{id}/guests/requests/{requestId}/respond",
                    aw::post().to(stage::respond_request),
                )
                .route(
                    "/v1/sessions/{id}/guests/{userId}/end",
                    aw::post().to(stage::end_turn),
                )
                // chat and gifts
                .route("/v1/sessions/{id}/messages", aw::post().to(chat::post))
                .route("/v1/sessions/{id}/messages", aw::get().to(chat::list))
                .route("/v1/sessions/{id}/gifts", aw::post().to(gifts::send))
                .route("/v1/gifts", aw::get().to(gifts::catalogue))
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
    /// consumer and the deadline worker, and flushes the outbox.
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
