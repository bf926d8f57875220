//! Shutdown plumbing shared by the services: one SIGINT/SIGTERM handler (actix's own signal
//! handling is turned off), a watch channel that background tasks observe.

use tokio::sync::watch;

/// Binds a service's port on every interface (`HTTP_PORT`; 0 picks a free port).
pub fn bind(port: u16) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(("0.0.0.0", port))
}

/// Serves until `stop` resolves, then stops accepting and lets in-flight requests finish.
/// What the service stops after that (consumers, workers, the outbox) is up to it.
pub async fn serve_until(
    server: actix_web::dev::Server,
    stop: impl std::future::Future<Output = ()>,
) {
    let handle = server.handle();
    let running = tokio::spawn(server);
    stop.await;
    tracing::info!("shutting down: no new requests, finishing in-flight ones");
    handle.stop(true).await;
    let _ = running.await;
}

/// A shutdown switch: `trigger()` flips it; tasks hold receivers.
#[derive(Clone)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown {
            tx: watch::channel(false).0,
        }
    }
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Reads an environment variable, with a default.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Reads a required environment variable, naming it when missing.
pub fn env_required(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow::anyhow!("missing required environment variable {name}"))
}

/// Reads and parses an environment variable, with a default; names it when it is invalid.
pub fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name).ok().filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|e| anyhow::anyhow!("environment variable {name}=`{v}` is invalid: {e}")),
    }
}
