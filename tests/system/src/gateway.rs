//! The real nginx gateway in front of a [`Stack`]: `deploy/gateway/ipelya.conf.template`
//! rendered with the stack's ports (as the nginx image's envsubst step would), nginx started
//! from a directory of its own (pid, logs and temp files inside it), waited for on its
//! `/health`, and stopped when dropped.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::stack::{Stack, StackConfig, Svc, free_port, tail};

/// What the gateway is rendered with; `new()` gives render.sh's defaults on a free port.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub port: u16,
    /// `OPS_ALLOW_CIDR`: the network `/ops` and `/v1/ops` answer to.
    pub ops_allow_cidr: String,
    /// `GATEWAY_RATE_LIMIT` (`50r/s`) and `GATEWAY_RATE_BURST` (100), per client address.
    pub rate_limit: String,
    pub rate_burst: u32,
    /// `GATEWAY_MAX_BODY` (`64k`).
    pub max_body: String,
    /// `OPENAPI_FILE`: what `GET /openapi.json` serves (the repository's
    /// `deploy/gateway/openapi.json` unless a test names another).
    pub openapi_file: PathBuf,
}

impl GatewayConfig {
    pub fn new() -> anyhow::Result<GatewayConfig> {
        Ok(GatewayConfig {
            port: free_port()?,
            ops_allow_cidr: "127.0.0.1/32".into(),
            rate_limit: "50r/s".into(),
            rate_burst: 100,
            max_body: "64k".into(),
            openapi_file: gateway_dir().join("openapi.json"),
        })
    }

    pub fn with_ops_allow_cidr(mut self, cidr: &str) -> Self {
        cidr.clone_into(&mut self.ops_allow_cidr);
        self
    }

    pub fn with_rate_limit(mut self, rate: &str, burst: u32) -> Self {
        rate.clone_into(&mut self.rate_limit);
        self.rate_burst = burst;
        self
    }

    pub fn with_openapi_file(mut self, path: &Path) -> Self {
        self.openapi_file = path.to_owned();
        self
    }

    /// `http://127.0.0.1:<port>`, known before the gateway starts (livekit-sim is told
    /// where to send its webhooks before the gateway exists).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The template's variables, the services being on `port_of(svc)`.
    fn variables(&self, port_of: impl Fn(Svc) -> u16) -> Vec<(&'static str, String)> {
        let upstream = |svc: Svc| format!("127.0.0.1:{}", port_of(svc));
        vec![
            ("TOKEN_ISSUER_UPSTREAM", upstream(Svc::TokenIssuer)),
            ("SESSION_MANAGER_UPSTREAM", upstream(Svc::SessionManager)),
            ("CALL_SIGNALING_UPSTREAM", upstream(Svc::CallSignaling)),
            ("MODERATION_UPSTREAM", upstream(Svc::Moderation)),
            ("WEBHOOK_INGEST_UPSTREAM", upstream(Svc::WebhookIngest)),
            ("NOTIFIER_UPSTREAM", upstream(Svc::Notifier)),
            ("GATEWAY_PORT", format!("127.0.0.1:{}", self.port)),
            ("OPS_ALLOW_CIDR", self.ops_allow_cidr.clone()),
            ("GATEWAY_MAX_BODY", self.max_body.clone()),
            ("GATEWAY_RATE_LIMIT", self.rate_limit.clone()),
            ("GATEWAY_RATE_BURST", self.rate_burst.to_string()),
            ("OPENAPI_FILE", self.openapi_file.display().to_string()),
        ]
    }
}

/// A running nginx. Dropping it stops nginx and its worker.
pub struct Gateway {
    pub config: GatewayConfig,
    dir: PathBuf,
    child: Child,
}

impl Gateway {
    /// Renders the template for `stack`, starts nginx and waits until it answers.
    pub async fn start(stack: &Stack, config: GatewayConfig) -> anyhow::Result<Gateway> {
        let nginx = nginx_bin()?;
        let dir = stack
            .config
            .log_dir
            .join(format!("gateway-{}", config.port));
        std::fs::create_dir_all(&dir)?;
        // nginx's workers run as `nobody` under root: they must reach the temp directories.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let template = std::fs::read_to_string(gateway_dir().join("ipelya.conf.template"))
            .context("reading deploy/gateway/ipelya.conf.template")?;
        std::fs::write(
            dir.join("ipelya.conf"),
            render(&template, &config.variables(|svc| stack.port(svc)))?,
        )?;
        std::fs::copy(
            gateway_dir().join("local-nginx.conf"),
            dir.join("nginx.conf"),
        )?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("gateway.log"))?;
        writeln!(log, "# nginx on :{}", config.port)?;
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(format!("{}/", dir.display()))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", nginx.display()))?;
        let mut gateway = Gateway { config, dir, child };
        gateway.wait_ready(Duration::from_secs(15)).await?;
        Ok(gateway)
    }

    pub fn url(&self) -> String {
        self.config.url()
    }

    /// nginx's error log and access log (one JSON object a line), in one file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("gateway.log")
    }

    /// The access log's entries so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let url = format!("{}/health", self.url());
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + within;
        let pid_file = self.dir.join("nginx.pid");
        loop {
            // nginx writes its pid file once its port is bound: until then an answer could
            // come from another test's process that took the port first.
            let bound = std::fs::read_to_string(&pid_file)
                .is_ok_and(|pid| pid.trim() == self.child.id().to_string());
            if bound
                && let Ok(r) = client
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "nginx exited ({status}) while starting; its log: {}\n{}",
                    self.log_path().display(),
                    tail(&self.log_path(), 20)
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "nginx did not answer on :{} within {within:?}; its log: {}\n{}",
                    self.config.port,
                    self.log_path().display(),
                    tail(&self.log_path(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    /// SIGTERM (nginx's fast shutdown stops the worker too); SIGKILL for both after a few
    /// seconds: a worker outlives a master killed with SIGKILL.
    fn drop(&mut self) {
        let pid = self.child.id();
        signal(pid, "TERM");
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for worker in children_of(pid) {
            signal(worker, "KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The processes whose parent is `pid` (from /proc/<pid>/stat's fourth field).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid ...`; comm may hold spaces, so after the last ')'.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// A stack whose livekit-sim sends its webhooks through the gateway (as LiveKit would in
/// production), and the gateway in front of it.
pub async fn stack_behind_gateway(
    config: StackConfig,
    gateway: GatewayConfig,
) -> anyhow::Result<(Stack, Gateway)> {
    nginx_bin()?; // before starting seven processes for nothing
    let config = config.with_env_for(
        Svc::LivekitSim,
        "LIVEKIT_WEBHOOK_URLS",
        format!("{}/webhooks/livekit", gateway.url()),
    );
    let stack = Stack::start(config).await?;
    let gateway = Gateway::start(&stack, gateway).await?;
    Ok((stack, gateway))
}

/// Replaces every `${NAME}` of `variables`, as envsubst does with a list of names; a
/// placeholder left on a line that is not a comment is an error naming it.
pub fn render(template: &str, variables: &[(&str, String)]) -> anyhow::Result<String> {
    let mut out = template.to_owned();
    for (name, value) in variables {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    let mut left: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.match_indices("${").map(move |(i, _)| &l[i..]))
        .map(|rest| rest.split_once('}').map_or(rest, |(name, _)| name))
        .map(|name| name.trim_start_matches("${"))
        .collect();
    left.sort_unstable();
    left.dedup();
    if !left.is_empty() {
        bail!("the gateway template has variables nobody set: {left:?}");
    }
    Ok(out)
}

/// `deploy/gateway/` of the repository.
pub fn gateway_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/gateway")
}

/// `NGINX_BIN`, else `nginx` on the PATH or in /usr/sbin (Debian's package).
pub fn nginx_bin() -> anyhow::Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let candidates: Vec<PathBuf> = match std::env::var("NGINX_BIN") {
        Ok(bin) => vec![PathBuf::from(bin)],
        Err(_) => std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("nginx"))
            .collect(),
    };
    candidates
        .into_iter()
        .find(|candidate| candidate.is_file())
        .context(
            "nginx is not installed: the end-to-end tests run through the real gateway \
             (Debian's package: `apt-get install nginx`, see tests/system/README.md), \
             or set NGINX_BIN to it",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_every_variable_and_names_the_missing_ones() {
        let vars = [("A", "1".to_owned()), ("B_C", "x:2".to_owned())];
        assert_eq!(
            render("listen ${A};\nserver ${B_C}; $nginx_var ${A}\n", &vars).unwrap(),
            "listen 1;\nserver x:2; $nginx_var 1\n"
        );
        // Comments may keep placeholders (the template's TLS lines).
        assert_eq!(
            render("    #tls# listen ${TLS_PORT} ssl;\n", &vars).unwrap(),
            "    #tls# listen ${TLS_PORT} ssl;\n"
        );
        let err = render("listen ${A};\nproxy ${MISSING}; ${OTHER}\n", &vars).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"the gateway template has variables nobody set: ["MISSING", "OTHER"]"#
        );
    }

    #[test]
    fn the_harness_sets_every_variable_of_the_template() {
        let template = std::fs::read_to_string(gateway_dir().join("ipelya.conf.template")).unwrap();
        let vars = GatewayConfig::new().unwrap().variables(|_| 1);
        assert!(render(&template, &vars).is_ok());
        // and each of them is used
        for (name, _) in &vars {
            assert!(template.contains(&format!("${{{name}}}")), "{name}");
        }
        assert!(render(&template, &vars[1..]).is_err());
    }
}
