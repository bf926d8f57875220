//! `sse-fanout`: thousands of participants of one live session hold `GET /v1/events` open on
//! the notifier, then events of that session are published one after another; for each the
//! run measures the time from the publish to each client's receipt, and to the last one.
//!
//! The clients are plain HTTP/1.1 over tokio sockets with a small read buffer each (a
//! full HTTP client per idle stream would cost the load generator more than the notifier
//! spends on it). The events go straight to JetStream, as the outbox relay would publish
//! them, so the figure is the notifier's path: NATS → decode → fan-out → sockets.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bus::{Event, Family, Subjects, proto};
use domain::ids::SessionId;
use domain::rooms::session_room;
use domain::session::{AccessType, SessionStatus, SessionType};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::cpu::{self, CpuUsage};
use crate::report::{LatencyMs, Machine, git};

const CLIENT_TOKEN_TTL_SECS: i64 = 3600;
const HIGHEST_US: u64 = 60_000_000;

/// Arguments of `loadgen sse-fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The notifier's address (host:port).
    #[arg(long, default_value = "127.0.0.1:8086")]
    pub addr: String,
    /// The notifier's database (the session and its participants are seeded there).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ipelya"
    )]
    pub database_url: String,
    /// NATS the notifier reads.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The notifier's `NATS_NAMESPACE`.
    #[arg(long, env = "NATS_NAMESPACE", default_value = "")]
    pub nats_namespace: String,
    /// The notifier's `AUTH_JWT_SECRET`.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Connected clients, each a distinct participant of the session (mind `ulimit -n`).
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Measured events, published one at a time.
    #[arg(long, default_value_t = 20)]
    pub events: usize,
    /// Pause between one event reaching every client and the next publish.
    #[arg(long, default_value_t = 200)]
    pub interval_ms: u64,
    /// How long an event may take to reach every client before the run moves on.
    #[arg(long, default_value_t = 10_000)]
    pub event_timeout_ms: u64,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// As for the other scenarios: processes whose CPU time is reported.
    #[arg(long = "cpu-watch", value_name = "NAME|NAME:TEXT|LABEL=PID")]
    pub cpu_watch: Vec<cpu::Watch>,
    /// Where to write the JSON report (stdout without it).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The report of a run (`bench/results/<stamp>-sse-fanout.json`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FanoutReport {
    pub scenario: &'static str,
    pub started_at: String,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub machine: Machine,
    pub params: serde_json::Value,
    /// Clients asked for, connected (200 and the stream open), and still open at the end.
    pub clients: usize,
    pub connected: usize,
    pub open_at_end: usize,
    /// Failed connects and streams that ended early, by kind.
    pub errors: BTreeMap<String, u64>,
    /// From opening the socket to the answer's head.
    pub connect_ms: LatencyMs,
    pub connect_phase_secs: f64,
    pub events: usize,
    /// Events that reached every connected client within `eventTimeoutMs`.
    pub events_fully_delivered: usize,
    /// Receipts expected (events × connected) that never came.
    pub missed_receipts: u64,
    /// Per event: publish → the last connected client has it.
    pub event_to_last_client_ms: LatencyMs,
    /// Per receipt: publish → that client has it.
    pub event_to_client_ms: LatencyMs,
    /// CPU during the event phase; `cpuMsPerRequest` is per event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUsage>,
}

impl FanoutReport {
    pub fn summary(&self) -> String {
        let l = &self.event_to_last_client_ms;
        let mut line = format!(
            "sse-fanout: {}/{} clients connected (connect p99 {:.1} ms), {} events, {} fully delivered; event → last client ms p50 {:.1} p95 {:.1} p99 {:.1} max {:.1}; event → client p99 {:.1} ms",
            self.connected,
            self.clients,
            self.connect_ms.p99,
            self.events,
            self.events_fully_delivered,
            l.p50,
            l.p95,
            l.p99,
            l.max,
            self.event_to_client_ms.p99,
        );
        if !self.errors.is_empty() {
            let kinds: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
            line.push_str(&format!(" [{}]", kinds.join(", ")));
        }
        if let Some(cpu) = &self.cpu {
            let each: Vec<String> = cpu
                .processes
                .iter()
                .map(|(label, p)| format!("{label} {:.0}%", p.pct_of_core))
                .collect();
            line.push_str(&format!("; cpu {}", each.join(", ")));
        }
        line
    }
}

/// What the clients share: which event an id is, when each was published, and the receipts.
struct Tally {
    index: HashMap<Uuid, usize>,
    published: Vec<OnceLock<Instant>>,
    received: Vec<AtomicUsize>,
    last_us: Vec<AtomicU64>,
    per_receipt: Mutex<Histogram<u64>>,
    ended: Mutex<BTreeMap<String, u64>>,
    open: AtomicUsize,
}

impl Tally {
    fn receipt(&self, id: Uuid) {
        let Some(&i) = self.index.get(&id) else {
            return;
        };
        let Some(at) = self.published[i].get() else {
            return;
        };
        let us = u64::try_from(at.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.last_us[i].fetch_max(us, Ordering::Relaxed);
        self.received[i].fetch_add(1, Ordering::Release);
        lock(&self.per_receipt).saturating_record(us);
    }

    fn error(&self, kind: impl Into<String>) {
        *lock(&self.ended).entry(kind.into()).or_default() += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.clients > 0 && args.events > 0,
        "--clients and --events must be at least 1"
    );
    eprintln!(
        "sse-fanout: seeding a live session with {} participants",
        args.clients
    );
    let (session, host, users) = seed(&args.database_url, args.clients).await?;
    let (nats, js) = bus::connect(&args.nats_url).await?;
    let subjects = Subjects::new(args.nats_namespace.clone());
    // One warm-up event (the notifier reads the session's audience on its first event),
    // then the measured ones.
    let events: Vec<Event> = (0..=args.events)
        .map(|i| {
            let payload = proto::MessagePosted {
                session_id: session.to_string(),
                message_id: Uuid::new_v4().to_string(),
                user_id: host.to_string(),
                body: format!("loadgen message {i}"),
                deleted: false,
            };
            Event::new(Family::Session, "message_posted", session, &payload)
        })
        .collect();
    let histogram = || Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("static bounds");
    let tally = Arc::new(Tally {
        index: events.iter().enumerate().map(|(i, e)| (e.id, i)).collect(),
        published: events.iter().map(|_| OnceLock::new()).collect(),
        received: events.iter().map(|_| AtomicUsize::new(0)).collect(),
        last_us: events.iter().map(|_| AtomicU64::new(0)).collect(),
        per_receipt: Mutex::new(histogram()),
        ended: Mutex::new(BTreeMap::new()),
        open: AtomicUsize::new(0),
    });

    eprintln!(
        "sse-fanout: connecting {} clients to {}",
        users.len(),
        args.addr
    );
    let connect_started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) =
        tokio::sync::mpsc::unbounded_channel::<Result<Duration, String>>();
    let mut clients = tokio::task::JoinSet::new();
    for user in &users {
        let token = auth::mint(args.jwt_secret.as_bytes(), *user, CLIENT_TOKEN_TTL_SECS);
        let (addr, tally, gate, ready) = (
            args.addr.clone(),
            tally.clone(),
            gate.clone(),
            ready_tx.clone(),
        );
        clients.spawn(async move { client(addr, token, tally, gate, ready).await });
    }
    drop(ready_tx);
    let mut connect = histogram();
    let mut connected = 0;
    let mut connect_errors: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(d) => {
                connected += 1;
                connect.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
            }
            Err(kind) => *connect_errors.entry(kind).or_default() += 1,
        }
        if connected + connect_errors.values().sum::<u64>() as usize == users.len() {
            break;
        }
    }
    let connect_phase = connect_started.elapsed();
    eprintln!(
        "sse-fanout: {connected} connected in {:.2} s, {} failed",
        connect_phase.as_secs_f64(),
        connect_errors.values().sum::<u64>()
    );

    let timeout = Duration::from_millis(args.event_timeout_ms);
    let publish = |i: usize| {
        let (js, subjects, tally, event) = (
            js.clone(),
            subjects.clone(),
            tally.clone(),
            events[i].clone(),
        );
        async move {
            let _ = tally.published[i].set(Instant::now());
            js.publish(event.subject(&subjects), event.encode().into())
                .await
                .context("publishing to JetStream")?
                .await
                .context("JetStream acknowledgement")?;
            let deadline = Instant::now() + timeout;
            while tally.received[i].load(Ordering::Acquire) < tally.open.load(Ordering::Acquire)
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            anyhow::Ok(())
        }
    };
    publish(0).await?;
    tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;

    let busy_before = cpu::machine_busy(Duration::from_secs(1)).await;
    let started_at = chrono::Utc::now();
    let cpu_before = cpu::snapshot(&args.cpu_watch);
    for i in 1..=args.events {
        publish(i).await?;
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    let cpu = cpu::usage(&cpu_before, &cpu::snapshot(&args.cpu_watch)).map(|mut c| {
        c.machine_busy_before_pct = busy_before;
        c.per_request(args.events as u64)
    });
    let open_at_end = tally.open.load(Ordering::Acquire);
    clients.abort_all();
    drop(nats);

    let mut last = histogram();
    let mut fully = 0;
    let mut missed = 0u64;
    for i in 1..=args.events {
        let got = tally.received[i].load(Ordering::Acquire);
        if got >= connected {
            fully += 1;
        }
        missed += connected.saturating_sub(got) as u64;
        if got > 0 {
            last.saturating_record(tally.last_us[i].load(Ordering::Relaxed));
        }
    }
    let mut errors = connect_errors;
    for (k, n) in lock(&tally.ended).iter() {
        *errors.entry(k.clone()).or_default() += n;
    }
    let report = FanoutReport {
        scenario: "sse-fanout",
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        git_commit: git(&["rev-parse", "--short", "HEAD"]),
        git_dirty: git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        machine: Machine::this(),
        params: json!({
            "addr": args.addr,
            "clients": args.clients,
            "events": args.events,
            "intervalMs": args.interval_ms,
            "eventTimeoutMs": args.event_timeout_ms,
            "connectConcurrency": args.connect_concurrency,
            "threads": args.threads,
            "sessionId": session,
            "published": "straight to JetStream",
        }),
        clients: args.clients,
        connected,
        open_at_end,
        errors,
        connect_ms: LatencyMs::from_micros(&connect),
        connect_phase_secs: (connect_phase.as_secs_f64() * 1000.0).round() / 1000.0,
        events: args.events,
        events_fully_delivered: fully,
        missed_receipts: missed,
        event_to_last_client_ms: LatencyMs::from_micros(&last),
        event_to_client_ms: LatencyMs::from_micros(&lock(&tally.per_receipt)),
        cpu,
    };
    match &args.out {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            println!("{}", report.summary());
            eprintln!("sse-fanout: report written to {}", path.display());
        }
        None => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("{}", report.summary());
        }
    }
    Ok(())
}

/// One client: opens its stream (under the connect gate), reports the connect time, then
/// reads frames until aborted, noting each event id it sees.
async fn client(
    addr: String,
    token: String,
    tally: Arc<Tally>,
    gate: Arc<Semaphore>,
    ready: tokio::sync::mpsc::UnboundedSender<Result<Duration, String>>,
) {
    let opened = {
        let _permit = gate.acquire().await;
        let started = Instant::now();
        open(&addr, &token)
            .await
            .map(|(s, rest)| (s, rest, started.elapsed()))
    };
    let (mut socket, mut pending) = match opened {
        Ok((s, rest, took)) => {
            tally.open.fetch_add(1, Ordering::AcqRel);
            let _ = ready.send(Ok(took));
            (s, rest)
        }
        Err(kind) => {
            let _ = ready.send(Err(kind));
            return;
        }
    };
    drop(ready);
    scan(&mut pending, &tally);
    let mut buf = [0u8; 2048];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) => {
                tally.open.fetch_sub(1, Ordering::AcqRel);
                tally.error("stream ended");
                return;
            }
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                scan(&mut pending, &tally);
            }
            Err(_) => {
                tally.open.fetch_sub(1, Ordering::AcqRel);
                tally.error("stream read error");
                return;
            }
        }
    }
}

/// Sends the request and reads the answer's head; returns what followed it.
async fn open(addr: &str, token: &str) -> Result<(TcpStream, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|_| "error: connect".to_owned())?;
    let _ = s.set_nodelay(true);
    let request = format!(
        "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|_| "error: write".to_owned())?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|_| "error: read".to_owned())?;
        if n == 0 {
            return Err("error: closed before the answer".into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = head.split(|b| *b == b' ').nth(1).unwrap_or_default();
            if status != b"200" {
                return Err(format!("{}", String::from_utf8_lossy(status)));
            }
            return Ok((s, head.split_off(end + 4)));
        }
        if head.len() > 16 * 1024 {
            return Err("error: answer head too long".into());
        }
    }
}

/// Takes the complete lines out of `pending` and notes every `id:` line (the chunked
/// encoding's size lines are lines of their own and are skipped).
fn scan(pending: &mut Vec<u8>, tally: &Tally) {
    let mut start = 0;
    while let Some(pos) = pending[start..].iter().position(|b| *b == b'\n') {
        let line = &pending[start..start + pos];
        if let Some(id) = line.strip_prefix(b"id: ") {
            let id = id.strip_suffix(b"\r").unwrap_or(id);
            if let Some(id) = std::str::from_utf8(id)
                .ok()
                .and_then(|s| Uuid::parse_str(s).ok())
            {
                tally.receipt(id);
            }
        }
        start += pos + 1;
    }
    pending.drain(..start);
}

/// A creator, its live session and `n` participants (profiles and active rows), in one
/// transaction; names carry a run tag so runs can share a database.
async fn seed(database_url: &str, n: usize) -> anyhow::Result<(Uuid, Uuid, Vec<Uuid>)> {
    let (mut client, connection) = tokio_postgres::connect(database_url, NoTls)
        .await
        .context("connecting to PostgreSQL (--database-url)")?;
    let connection = tokio::spawn(connection);
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let (creator, session) = (Uuid::new_v4(), Uuid::new_v4());
    let users: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO profiles (id, username, is_creator) VALUES ($1, $2, true)",
        &[&creator, &format!("loadgen_{tag}_creator")],
    )
    .await
    .context("seeding the creator (has the notifier migrated this database?)")?;
    tx.execute(
        "INSERT INTO live_sessions (id, creator_id, session_type, title, access_type, status, \
         room_name, started_at) VALUES ($1, $2, $3, 'loadgen sse fan-out', $4, $5, $6, now())",
        &[
            &session,
            &creator,
            &SessionType::VideoLive.as_str(),
            &AccessType::Public.as_str(),
            &SessionStatus::Live.as_str(),
            &session_room(SessionType::VideoLive, SessionId::from(session)),
        ],
    )
    .await
    .context("seeding the live session")?;
    tx.execute(
        "INSERT INTO profiles (id, username) \
         SELECT id, $2 || ord FROM unnest($1::uuid[]) WITH ORDINALITY AS v(id, ord)",
        &[&users, &format!("loadgen_{tag}_participant_")],
    )
    .await
    .context("seeding the participants")?;
    tx.execute(
        "INSERT INTO live_participants (id, session_id, user_id, role, is_active, first_joined_at, joined_at) \
         SELECT gen_random_uuid(), $2, id, 'viewer', true, now(), now() FROM unnest($1::uuid[]) AS v(id)",
        &[&users, &session],
    )
    .await
    .context("seeding the participations")?;
    tx.commit().await.context("committing the seed")?;
    drop(client);
    let _ = connection.await;
    Ok((session, creator, users))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_ids_across_reads_and_chunk_lines() {
        let id = Uuid::new_v4();
        let tally = Tally {
            index: HashMap::from([(id, 0)]),
            published: vec![OnceLock::from(Instant::now())],
            received: vec![AtomicUsize::new(0)],
            last_us: vec![AtomicU64::new(0)],
            per_receipt: Mutex::new(Histogram::new_with_bounds(1, HIGHEST_US, 3).unwrap()),
            ended: Mutex::new(BTreeMap::new()),
            open: AtomicUsize::new(0),
        };
        let frame = format!("5a\r\nid: {id}\nevent: session.message_posted\ndata: {{}}\n\n\r\n");
        let (a, b) = frame.as_bytes().split_at(12);
        let mut pending = a.to_vec();
        scan(&mut pending, &tally);
        assert_eq!(tally.received[0].load(Ordering::Relaxed), 0);
        pending.extend_from_slice(b);
        scan(&mut pending, &tally);
        assert_eq!(tally.received[0].load(Ordering::Relaxed), 1);
        assert!(pending.is_empty());
    }
}
