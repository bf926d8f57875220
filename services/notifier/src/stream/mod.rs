//! `GET /v1/events`: each user's Server-Sent Events stream, fed from NATS.
//!
//! Every replica reads every `call.*` and `session.*` event (see [`feed`]) and sends each to
//! the recipients connected to it (see [`hub`]):
//! - `call.*` → the caller and the callee;
//! - `session.guest_*` → the guest and the session's host;
//! - session status changes, `session.participant_joined|left`,
//!   `session.message_posted|message_deleted`, `session.gift_sent` → everyone in the
//!   session (host and active participants, see [`audience`]).
//!
//! Frames are `id: <event id>\nevent: <type>\ndata: <JSON>\n\n`, encoded once per event.

mod audience;
mod encode;
mod feed;
mod hub;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web as aw};
use bus::Family;
use domain::ErrorCode;
use tokio::task::JoinHandle;
use web::backbone::Backbone;
use web::openapi::ErrorBody;
use web::server::env_parse;
use web::{ApiError, ApiResult, AuthUser};

pub use hub::{Hub, Resume};

/// The stream's configuration.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// `STREAM_HEARTBEAT_SECONDS` (15): how often every connection gets a `: hb` comment.
    pub heartbeat: Duration,
    /// `STREAM_RESUME_SECONDS` (300): how long a user's events are kept for a resume.
    pub resume_window: Duration,
    /// `STREAM_RESUME_EVENTS` (256): at most this many events kept per user.
    pub resume_events: usize,
    /// `STREAM_MAX_CONNECTIONS_PER_USER` (5): a further connection closes the oldest.
    pub max_connections_per_user: usize,
    /// `STREAM_CLIENT_BUFFER` (64): frames waiting for one connection; a client that lets
    /// it fill up is disconnected (it resumes with `Last-Event-ID`).
    pub client_buffer: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            heartbeat: Duration::from_secs(15),
            resume_window: Duration::from_secs(300),
            resume_events: 256,
            max_connections_per_user: 5,
            client_buffer: 64,
        }
    }
}

impl StreamConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let d = StreamConfig::default();
        let secs = |name, default: Duration| -> anyhow::Result<Duration> {
            let v: u64 = env_parse(name, default.as_secs())?;
            anyhow::ensure!(v > 0, "environment variable {name} must be at least 1");
            Ok(Duration::from_secs(v))
        };
        let count = |name, default: usize| -> anyhow::Result<usize> {
            let v: usize = env_parse(name, default)?;
            anyhow::ensure!(v > 0, "environment variable {name} must be at least 1");
            Ok(v)
        };
        Ok(StreamConfig {
            heartbeat: secs("STREAM_HEARTBEAT_SECONDS", d.heartbeat)?,
            resume_window: secs("STREAM_RESUME_SECONDS", d.resume_window)?,
            resume_events: count("STREAM_RESUME_EVENTS", d.resume_events)?,
            max_connections_per_user: count(
                "STREAM_MAX_CONNECTIONS_PER_USER",
                d.max_connections_per_user,
            )?,
            client_buffer: count("STREAM_CLIENT_BUFFER", d.client_buffer)?,
        })
    }
}

/// Subscribes to the `call` and `session` families and starts the shared heartbeat, which
/// also closes every stream when the shutdown switch flips.
pub async fn start(
    backbone: &Backbone,
    config: &StreamConfig,
) -> anyhow::Result<(Arc<Hub>, Vec<JoinHandle<()>>)> {
    let hub = Arc::new(Hub::new(config.clone(), backbone.pool.clone()));
    let mut tasks = Vec::new();
    for family in [Family::Call, Family::Session] {
        tasks.push(
            feed::spawn(
                &backbone.js,
                backbone.subjects.clone(),
                family,
                hub.clone(),
                backbone.shutdown.subscribe(),
            )
            .await?,
        );
    }
    tasks.push(spawn_heartbeat(hub.clone(), backbone.shutdown.subscribe()));
    Ok((hub, tasks))
}

/// One ticker for every connection (not a timer per connection); it also forgets users and
/// sessions gone quiet, and closes the streams at shutdown.
fn spawn_heartbeat(
    hub: Arc<Hub>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(hub.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {
                    hub.heartbeat();
                    hub.sweep();
                    lock(&hub.audiences).sweep();
                }
                _ = shutdown.changed() => break,
            }
        }
        hub.close_all();
    })
}

/// Registers `GET /v1/events`.
pub fn routes(cfg: &mut aw::ServiceConfig) {
    cfg.route("/v1/events", aw::get().to(events));
}

/// The caller's stream. A `Last-Event-ID` found in the user's recent events replays what
/// followed it; any other value gets `event: resync` (refetch state), then live events.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(("Last-Event-ID" = Option<String>, Header, description = "The last event id received: resumes after it (or `event: resync` when it is too old)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Server-Sent Events, open until the client or the service closes it: `id: <event id>`, `event: <type>` (`call.ringing`, `session.live`, `session.gift_sent`, ..., `resync`), `data: <JSON>`; a `: hb` comment every `STREAM_HEARTBEAT_SECONDS`", content_type = "text/event-stream", body = String),
        (status = 401, description = "UNAUTHORIZED: missing, bad or expired token, or no profile", body = ErrorBody),
        (status = 503, description = "INTERNAL_ERROR: the service is shutting down", body = ErrorBody),
    ),
)]
pub(crate) async fn events(
    req: HttpRequest,
    user: AuthUser,
    hub: aw::Data<Hub>,
) -> ApiResult<HttpResponse> {
    {
        let mut conn = db::pool::conn(&hub.pool).await?;
        db::queries::profiles::find(&mut conn, user.0)
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown user"))?;
    }
    let resume = match req.headers().get("last-event-id") {
        None => Resume::Fresh,
        Some(v) => v
            .to_str()
            .map_or(Resume::Unknown, |v| Resume::parse(Some(v))),
    };
    let body = hub
        .into_inner()
        .connect(user.0, resume)
        .map_err(|e| ApiError::new(ErrorCode::InternalError, e.to_string()).with_status(503))?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        // Proxies that buffer responses (nginx) would hold the events back.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// A poisoned lock only means a panic elsewhere while it was held; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
