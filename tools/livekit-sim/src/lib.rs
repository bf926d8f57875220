#![doc = include_str!("../README.md")]

mod control;
mod error;
mod ids;
mod sim;
mod twirp;
mod webhooks;

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context;

pub use error::SimError;
pub use sim::{CallRecord, Faults};

/// How the simulator behaves. Build with [`SimConfig::new`] and adjust the public fields.
#[derive(Clone)]
pub struct SimConfig {
    /// The API key tokens must be issued by (`iss`).
    pub api_key: String,
    /// The secret tokens are verified with and webhooks are signed with.
    pub api_secret: String,
    /// Every webhook goes to each of these URLs.
    pub webhook_urls: Vec<String>,
    /// `room_finished` this long after `CreateRoom` when nobody joined (LiveKit: 300 s), unless
    /// the request set its own.
    pub empty_timeout: Duration,
    /// `room_finished` this long after the last participant left (LiveKit: 20 s), unless the
    /// room's `CreateRoom` set its own.
    pub departure_timeout: Duration,
    /// The first webhook retry waits this long, then twice as long each time (LiveKit: 1 s).
    pub webhook_retry_base: Duration,
}

impl SimConfig {
    /// LiveKit's defaults and no webhook URL.
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            webhook_urls: Vec::new(),
            empty_timeout: Duration::from_secs(300),
            departure_timeout: Duration::from_secs(20),
            webhook_retry_base: Duration::from_secs(1),
        }
    }

    pub fn credentials(&self) -> livekit::Credentials {
        livekit::Credentials::new(&self.api_key, &self.api_secret)
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("webhook_urls", &self.webhook_urls)
            .field("empty_timeout", &self.empty_timeout)
            .field("departure_timeout", &self.departure_timeout)
            .field("webhook_retry_base", &self.webhook_retry_base)
            .finish()
    }
}

/// The configuration `livekit-sim` reads from its environment, through `lookup` so tests can
/// pass their own: `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (required), `LIVEKIT_WEBHOOK_URLS`
/// (comma separated), `HTTP_PORT` (7880), `SIM_BIND_ADDRESS` (0.0.0.0),
/// `SIM_EMPTY_TIMEOUT_SECONDS` (300), `SIM_DEPARTURE_TIMEOUT_SECONDS` (20).
pub fn config_from_env(
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(SimConfig, SocketAddr)> {
    let get = |k: &str| {
        lookup(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let required = |k: &str| {
        get(k).with_context(|| format!("environment variable {k} is required but not set"))
    };
    let seconds = |k: &str, default: u64| -> anyhow::Result<Duration> {
        match get(k) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .with_context(|| format!("{k} must be a number of seconds, got {v:?}")),
        }
    };
    let mut config = SimConfig::new(
        required("LIVEKIT_API_KEY")?,
        required("LIVEKIT_API_SECRET")?,
    );
    config.webhook_urls = get("LIVEKIT_WEBHOOK_URLS")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for url in &config.webhook_urls {
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "LIVEKIT_WEBHOOK_URLS: {url:?} is not an http(s) URL"
        );
    }
    config.empty_timeout = seconds("SIM_EMPTY_TIMEOUT_SECONDS", 300)?;
    config.departure_timeout = seconds("SIM_DEPARTURE_TIMEOUT_SECONDS", 20)?;
    let port: u16 = match get("HTTP_PORT") {
        None => 7880,
        Some(p) => p
            .parse()
            .with_context(|| format!("HTTP_PORT must be a port number, got {p:?}"))?,
    };
    let host = get("SIM_BIND_ADDRESS").unwrap_or_else(|| "0.0.0.0".to_owned());
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("SIM_BIND_ADDRESS must be an IP address, got {host:?}"))?;
    Ok((config, addr))
}

/// A running simulator.
pub struct SimHandle {
    base_url: String,
    server: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    sim: Arc<sim::Sim>,
}

impl SimHandle {
    /// `http://127.0.0.1:<port>`: the URL to give `RoomClient`, `LiveKitRooms` and test clients.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Webhooks queued or being delivered.
    pub fn pending_webhooks(&self) -> usize {
        self.sim.dispatcher.pending()
    }

    /// Waits until no webhook is queued or in delivery; `false` if `timeout` passed first.
    pub async fn wait_webhooks_sent(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.pending_webhooks() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops the HTTP server (in-flight requests finish); queued webhooks are abandoned.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.task.await;
    }
}

/// Starts the simulator on `listener` (bind it to port 0 in tests) within the current tokio
/// runtime, which also runs its timers and webhook deliveries.
pub async fn spawn(config: SimConfig, listener: TcpListener) -> anyhow::Result<SimHandle> {
    // reqwest (rustls without a built-in provider) needs a process-wide provider even for plain
    // http; `main` installs it first, in-process tests may not have. An error only means one is
    // already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut addr = listener.local_addr().context("listener address")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let sim = Arc::new(sim::Sim::new(config, tokio::runtime::Handle::current())?);
    let data = web::Data::from(Arc::clone(&sim));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(4 << 20))
            .configure(routes)
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(2)
    .listen(listener)
    .context("serve on the listener")?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(url = %format!("http://{addr}"), "livekit-sim started");
    Ok(SimHandle {
        base_url: format!("http://{addr}"),
        server: handle,
        task,
        sim,
    })
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| async { "OK" }))
        .route(
            "/twirp/livekit.RoomService/{method}",
            web::post().to(twirp::handle),
        )
        .configure(control::routes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_config_defaults_and_parsing() {
        let (c, addr) = config_from_env(env(&[
            ("LIVEKIT_API_KEY", "k"),
            ("LIVEKIT_API_SECRET", "s"),
            ("LIVEKIT_WEBHOOK_URLS", "http://a/hook, http://b/hook,"),
        ]))
        .unwrap();
        assert_eq!(c.webhook_urls, ["http://a/hook", "http://b/hook"]);
        assert_eq!(c.empty_timeout, Duration::from_secs(300));
        assert_eq!(c.departure_timeout, Duration::from_secs(20));
        assert_eq!(addr.port(), 7880);
        assert!(!format!("{c:?}").contains("\"s\""));

        let (c, addr) = config_from_env(env(&[
            ("LIVEKIT_API_KEY", "k"),
            ("LIVEKIT_API_SECRET", "s"),
            ("HTTP_PORT", "9000"),
            ("SIM_BIND_ADDRESS", "127.0.0.1"),
            ("SIM_EMPTY_TIMEOUT_SECONDS", "2"),
            ("SIM_DEPARTURE_TIMEOUT_SECONDS", "0.5"),
        ]))
        .unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:9000");
        assert_eq!(c.empty_timeout, Duration::from_secs(2));
        assert_eq!(c.departure_timeout, Duration::from_millis(500));
        assert!(c.webhook_urls.is_empty());
    }

    #[test]
    fn env_config_names_what_is_missing_or_wrong() {
        let err = config_from_env(env(&[("LIVEKIT_API_KEY", "k")])).unwrap_err();
        assert!(err.to_string().contains("LIVEKIT_API_SECRET"), "{err}");
        let err = config_from_env(env(&[
            ("LIVEKIT_API_KEY", "k"),
            ("LIVEKIT_API_SECRET", "s"),
            ("HTTP_PORT", "x"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("HTTP_PORT"), "{err}");
        let err = config_from_env(env(&[
            ("LIVEKIT_API_KEY", "k"),
            ("LIVEKIT_API_SECRET", "s"),
            ("LIVEKIT_WEBHOOK_URLS", "ftp://x"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("LIVEKIT_WEBHOOK_URLS"), "{err}");
    }
}
