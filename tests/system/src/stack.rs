//! The services as processes: started with the environment of `scripts/stack.sh`, waited
//! for on `/health`, killed with SIGKILL and restarted on the same port by the fault suite.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A process of the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Svc {
    LivekitSim,
    WebhookIngest,
    TokenIssuer,
    SessionManager,
    CallSignaling,
    Moderation,
    Notifier,
}

impl Svc {
    /// Every service (not livekit-sim), in start order.
    pub const SERVICES: [Svc; 6] = [
        Svc::WebhookIngest,
        Svc::TokenIssuer,
        Svc::SessionManager,
        Svc::CallSignaling,
        Svc::Moderation,
        Svc::Notifier,
    ];

    /// The binary's (and the package's) name.
    pub fn bin(self) -> &'static str {
        match self {
            Svc::LivekitSim => "livekit-sim",
            Svc::WebhookIngest => "webhook-ingest",
            Svc::TokenIssuer => "token-issuer",
            Svc::SessionManager => "session-manager",
            Svc::CallSignaling => "call-signaling",
            Svc::Moderation => "moderation",
            Svc::Notifier => "notifier",
        }
    }

    /// Upper-case with underscores (`SESSION_MANAGER`), for environment variables.
    pub fn env_name(self) -> String {
        self.bin().replace('-', "_").to_uppercase()
    }

    fn health_path(self) -> &'static str {
        match self {
            Svc::LivekitSim => "/",
            _ => "/health",
        }
    }
}

/// What the stack runs against.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub database_url: String,
    pub nats_url: String,
    /// NATS subjects and streams of this stack only (`NATS_NAMESPACE`).
    pub namespace: String,
    /// Given to every process after the defaults (shorter timeouts, faults, OTLP, ...).
    pub env: Vec<(String, String)>,
    /// Per-process additions, after `env`.
    pub env_for: HashMap<Svc, Vec<(String, String)>>,
    /// Where each process's output goes (`<dir>/<bin>.log`, appended across restarts).
    pub log_dir: PathBuf,
}

impl StackConfig {
    /// A fresh migrated database (cloned from testkit's template) and a NATS namespace of
    /// its own on the machine's PostgreSQL and NATS.
    pub async fn fresh() -> anyhow::Result<(StackConfig, testkit::TestDb)> {
        let db = testkit::TestDb::new().await;
        let namespace = testkit::namespace();
        let log_dir = target_dir()?.join("system-logs").join(&namespace);
        std::fs::create_dir_all(&log_dir)?;
        Ok((
            StackConfig {
                database_url: db.url.clone(),
                nats_url: testkit::nats_url(),
                namespace,
                env: Vec::new(),
                env_for: HashMap::new(),
                log_dir,
            },
            db,
        ))
    }

    pub fn with_env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn with_env_for(mut self, svc: Svc, key: &str, value: impl Into<String>) -> Self {
        self.env_for
            .entry(svc)
            .or_default()
            .push((key.to_owned(), value.into()));
        self
    }
}

struct Proc {
    child: Child,
    port: u16,
}

/// The running processes. Dropping it kills them all.
pub struct Stack {
    pub config: StackConfig,
    procs: HashMap<Svc, Proc>,
    ports: HashMap<Svc, u16>,
}

impl Stack {
    /// Starts livekit-sim and every service, each on a free port, and waits until each
    /// answers its health check.
    pub async fn start(config: StackConfig) -> anyhow::Result<Stack> {
        telemetry::install_crypto_providers();
        ensure_built()?;
        let mut ports = HashMap::new();
        for svc in std::iter::once(Svc::LivekitSim).chain(Svc::SERVICES) {
            let port = loop {
                let port = free_port()?;
                if !ports.values().any(|&p| p == port) {
                    break port;
                }
            };
            ports.insert(svc, port);
        }
        let mut stack = Stack {
            config,
            procs: HashMap::new(),
            ports,
        };
        for svc in std::iter::once(Svc::LivekitSim).chain(Svc::SERVICES) {
            stack.spawn(svc).await?;
        }
        Ok(stack)
    }

    pub fn port(&self, svc: Svc) -> u16 {
        self.ports[&svc]
    }

    /// `http://127.0.0.1:<port>` of a process.
    pub fn url(&self, svc: Svc) -> String {
        format!("http://127.0.0.1:{}", self.port(svc))
    }

    pub fn log_path(&self, svc: Svc) -> PathBuf {
        self.config.log_dir.join(format!("{}.log", svc.bin()))
    }

    /// Whether the process is running (not killed, not exited).
    pub fn is_running(&mut self, svc: Svc) -> bool {
        match self.procs.get_mut(&svc) {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL: no shutdown hook runs, in-flight work is lost as on a machine failure.
    pub async fn kill9(&mut self, svc: Svc) -> anyhow::Result<()> {
        if let Some(mut p) = self.procs.remove(&svc) {
            p.child.start_kill().context("kill")?;
            p.child.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM and wait for the graceful stop (at most `within`); SIGKILL after that.
    pub async fn terminate(&mut self, svc: Svc, within: Duration) -> anyhow::Result<bool> {
        let Some(mut p) = self.procs.remove(&svc) else {
            return Ok(true);
        };
        if let Some(pid) = p.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(within, p.child.wait()).await {
            Ok(status) => Ok(status?.success()),
            Err(_) => {
                let _ = p.child.start_kill();
                p.child.wait().await?;
                Ok(false)
            }
        }
    }

    /// Starts a stopped or killed process again on its port and waits for its health.
    pub async fn restart(&mut self, svc: Svc) -> anyhow::Result<()> {
        self.kill9(svc).await?;
        self.spawn(svc).await
    }

    fn env_of(&self, svc: Svc) -> Vec<(String, String)> {
        let c = &self.config;
        let mut env: Vec<(String, String)> = [
            ("HTTP_PORT", self.port(svc).to_string()),
            ("DATABASE_URL", c.database_url.clone()),
            ("NATS_URL", c.nats_url.clone()),
            ("NATS_NAMESPACE", c.namespace.clone()),
            ("AUTH_JWT_SECRET", testkit::JWT_SECRET.to_owned()),
            ("LIVEKIT_API_KEY", testkit::LIVEKIT_KEY.to_owned()),
            ("LIVEKIT_API_SECRET", testkit::LIVEKIT_SECRET.to_owned()),
            ("LIVEKIT_URL", self.url(Svc::LivekitSim)),
            (
                "LIVEKIT_WS_URL",
                format!("ws://127.0.0.1:{}", self.port(Svc::LivekitSim)),
            ),
            ("TRUSTED_PROXIES", "127.0.0.1/32".to_owned()),
            ("DB_POOL_SIZE", "4".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            (
                "LIVEKIT_WEBHOOK_URLS",
                format!("{}/webhooks/livekit", self.url(Svc::WebhookIngest)),
            ),
            ("SIM_BIND_ADDRESS", "127.0.0.1".to_owned()),
            (
                "TOKEN_ISSUER_METRICS_URLS",
                format!("{}/metrics", self.url(Svc::TokenIssuer)),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(c.env.iter().cloned());
        if let Some(extra) = c.env_for.get(&svc) {
            env.extend(extra.iter().cloned());
        }
        env
    }

    async fn spawn(&mut self, svc: Svc) -> anyhow::Result<()> {
        let port = self.port(svc);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(svc))?;
        let mut cmd = Command::new(bin_dir()?.join(svc.bin()));
        cmd.envs(self.env_of(svc))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", svc.bin()))?;
        self.procs.insert(svc, Proc { child, port });
        self.wait_healthy(svc, Duration::from_secs(60)).await
    }

    /// Waits until the process answers its health check with 200.
    pub async fn wait_healthy(&mut self, svc: Svc, within: Duration) -> anyhow::Result<()> {
        let url = format!("{}{}", self.url(svc), svc.health_path());
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // The answer counts only when our own process holds the listening socket: two
            // stacks started at once may pick the same free port, and then the other
            // stack's service would answer for ours.
            if let Ok(r) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status().is_success()
                && self.listens(svc)
            {
                return Ok(());
            }
            if !self.is_running(svc) {
                bail!(
                    "{} exited while starting; its log: {}\n{}",
                    svc.bin(),
                    self.log_path(svc).display(),
                    tail(&self.log_path(svc), 20)
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{} did not become healthy on :{} within {within:?}; its log: {}\n{}",
                    svc.bin(),
                    self.procs[&svc].port,
                    self.log_path(svc).display(),
                    tail(&self.log_path(svc), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Stack {
    /// Whether the process of `svc` holds the socket listening on its port.
    fn listens(&self, svc: Svc) -> bool {
        let Some(pid) = self.procs.get(&svc).and_then(|p| p.child.id()) else {
            return false;
        };
        let inodes = listening_inodes(self.port(svc));
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| {
                    l.to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse::<u64>()
                        .ok()
                })
                .is_some_and(|inode| inodes.contains(&inode))
        })
    }
}

/// The inodes of the TCP sockets listening on `port` (any address), from /proc/net/tcp{,6}.
fn listening_inodes(port: u16) -> Vec<u64> {
    let port_hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    // local_address, state 0A = LISTEN, inode is the tenth column
                    (cols.len() > 9 && cols[1].ends_with(&port_hex) && cols[3] == "0A")
                        .then(|| cols[9].parse().ok())
                        .flatten()
                })
                .collect::<Vec<u64>>()
        })
        .collect()
}

/// The last lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port nobody listens on now.
/// Picked at random below the kernel's ephemeral range (32768 and up), where outgoing
/// connections take their local ports, so concurrent stacks rarely pick the same one (and
/// `wait_healthy` notices when they do).
pub fn free_port() -> anyhow::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..200 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The cargo target directory this test binary was built into.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    Ok(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Where the service binaries are: `SYSTEM_BIN_DIR`, else the directory of the running
/// executable's profile (`target/<profile>`, the parent of `deps/` for test binaries).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("SYSTEM_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("executable's directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Builds the binaries when one is missing (a test binary run on its own; under
/// `cargo nextest run --workspace` cargo has built them already).
fn ensure_built() -> anyhow::Result<()> {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = bin_dir().map_err(|e| e.to_string())?;
            let all = std::iter::once(Svc::LivekitSim).chain(Svc::SERVICES);
            if all.clone().all(|s| dir.join(s.bin()).exists()) {
                return Ok(());
            }
            let release = dir.ends_with("release");
            let mut cmd = std::process::Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            );
            cmd.arg("build").arg("--locked");
            if release {
                cmd.arg("--release");
            }
            for s in all {
                cmd.args(["-p", s.bin()]);
            }
            let status = cmd.status().map_err(|e| e.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("cargo build of the services failed: {status}"))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}
