//! A PostgreSQL cluster and a NATS server of the suite's own, so that restarting them
//! disturbs nobody else (the machine's shared ones serve other tests at the same time).
//!
//! Both live in one temporary directory (`/tmp/ipelya-faults-<pid>-<n>`) that holds the
//! owner's pid: a run killed before it could clean up is cleaned up by the next one.
//! Dropping [`Infra`] stops both servers and removes the directory, also on a panic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const NATS_BIN: &str = "/usr/sbin/nats-server";
const DIR_PREFIX: &str = "ipelya-faults-";

/// The suite's own PostgreSQL and NATS.
pub struct Infra {
    root: PathBuf,
    pub pg: Postgres,
    pub nats: Nats,
}

impl Infra {
    /// Creates the directory, initialises and starts the cluster, starts NATS.
    pub async fn start() -> anyhow::Result<Infra> {
        clean_stale();
        let root = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros()
        ));
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("owner"), std::process::id().to_string())?;
        // From here on, Drop cleans up whatever was started.
        let mut infra = Infra {
            pg: Postgres {
                data: root.join("pg"),
                socket_dir: root.join("sock"),
                log: root.join("postgres.log"),
                port: system::stack::free_port()?,
            },
            nats: Nats {
                store: root.join("nats"),
                log: root.join("nats.log"),
                port: system::stack::free_port()?,
                child: None,
            },
            root,
        };
        // postgres (the user) must reach its directories below root's.
        run(Command::new("chmod").arg("755").arg(&infra.root))?;
        infra.pg.init()?;
        infra.pg.start().await?;
        infra.nats.start().await?;
        Ok(infra)
    }

    /// Copies the servers' logs next to the services' (the temporary directory goes).
    pub fn keep_logs(&self, dir: &Path) {
        let _ = std::fs::copy(&self.pg.log, dir.join("postgres.log"));
        let _ = std::fs::copy(&self.nats.log, dir.join("nats.log"));
    }
}

impl Drop for Infra {
    fn drop(&mut self) {
        self.nats.stop();
        self.pg.stop_now();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A PostgreSQL 15 cluster on a port of its own, trust authentication, `fsync=off`.
pub struct Postgres {
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    pub port: u16,
}

impl Postgres {
    fn init(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.socket_dir)?;
        run(Command::new("chown")
            .arg("postgres:postgres")
            .arg(&self.socket_dir))?;
        std::fs::create_dir_all(&self.data)?;
        run(Command::new("chown")
            .arg("postgres:postgres")
            .arg(&self.data))?;
        run(as_postgres(&format!("{PG_BIN}/initdb"))
            .arg("-D")
            .arg(&self.data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(Stdio::null()))
        .context("initdb")
    }

    /// Starts the server and waits until it accepts connections.
    pub async fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.socket_dir.display()
        );
        // `-l` is opened by pg_ctl itself (running as postgres): create it writable first.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        run(Command::new("chown")
            .arg("postgres:postgres")
            .arg(&self.log))?;
        run(as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .stdout(Stdio::null()))
        .context("pg_ctl start")?;
        self.wait_ready().await
    }

    /// `pg_ctl stop -m immediate`: every backend killed at once, as on a crash; the next
    /// start recovers from the WAL.
    pub fn stop_now(&self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = as_postgres(&format!("{PG_BIN}/pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// A crash and a start again, `down_for` apart.
    pub async fn restart(&self, down_for: Duration) -> anyhow::Result<()> {
        self.stop_now();
        tokio::time::sleep(down_for).await;
        self.start().await
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn connect(&self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) =
            tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls)
                .await
                .with_context(|| format!("connecting to {}", self.url(database)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    pub async fn create_database(&self, name: &str) -> anyhow::Result<()> {
        self.connect("postgres")
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        Ok(())
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(c) = self.connect("postgres").await
                && c.simple_query("SELECT 1").await.is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "PostgreSQL on :{} did not accept connections; its log: {}",
                    self.port,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A NATS server with JetStream, its store in the suite's directory.
pub struct Nats {
    store: PathBuf,
    log: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Nats {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (same port, same store as before) and waits until it answers.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(NATS_BIN)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning nats-server")?;
        std::fs::write(self.store_pid_file(), child.id().to_string())?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let last = match async_nats::connect(self.url()).await {
                // JetStream answers its API (the typed account query does not parse the
                // answer of this server version).
                Ok(client) => match client.request("$JS.API.INFO", "".into()).await {
                    Ok(_) => return Ok(()),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "NATS on :{} did not come up ({last}); its log:\n{}",
                    self.port,
                    system::stack::tail(&self.log, 10)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM and wait: the server's own orderly stop (JetStream flushes its store).
    pub fn stop(&mut self) {
        self.signal("-TERM");
    }

    /// `kill -<signal>`, and wait until the server is gone.
    fn signal(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(self.store_pid_file());
        }
    }

    /// A stop (an orderly one, or a crash: SIGKILL) and a start again, `down_for` apart.
    pub async fn restart(&mut self, down_for: Duration, crash: bool) -> anyhow::Result<()> {
        self.signal(if crash { "-KILL" } else { "-TERM" });
        tokio::time::sleep(down_for).await;
        self.start().await
    }

    fn store_pid_file(&self) -> PathBuf {
        self.store.with_extension("pid")
    }
}

fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", program]);
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Stops the servers of earlier runs whose process is gone, and removes their directories.
fn clean_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        if !is_ours {
            continue;
        }
        let owner = std::fs::read_to_string(path.join("owner")).unwrap_or_default();
        if Path::new("/proc").join(owner.trim()).exists() && !owner.trim().is_empty() {
            continue; // a run still going
        }
        if let Ok(pid) = std::fs::read_to_string(path.join("nats.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        let stale = Postgres {
            data: path.join("pg"),
            socket_dir: path.join("sock"),
            log: path.join("postgres.log"),
            port: 0,
        };
        stale.stop_now();
        let _ = std::fs::remove_dir_all(&path);
    }
}
