//! `call-storm`: N pairs of users call each other at once. One call set-up is the whole
//! path a phone waits on: `POST /v1/calls` (call-signaling creates the LiveKit room, writes
//! the call and `call.initiated`), the notifier's push (its `log` mode here) and its
//! `notify.push_result`, call-signaling's move to `ringing`, the callee learning of it, and
//! its `POST /v1/calls/{id}/accept`. The callee learns of the ring the way the app does
//! when it is open: on its event stream (`GET /v1/events` on the notifier), connected before
//! the call is placed; it answers on `call.ringing`. (Polling the call instead would make
//! the load generator, not the calls, the main load.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::engine::Outcome;
use crate::report::{LatencyMs, Report};

const CLIENT_TOKEN_TTL_SECS: i64 = 3600;

/// Arguments of `loadgen call-storm`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// call-signaling's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8083")]
    pub url: reqwest::Url,
    /// The database call-signaling uses (the users and the callees' devices are seeded there).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ipelya"
    )]
    pub database_url: String,
    /// Caller/callee pairs, each calling once.
    #[arg(long, default_value_t = 2000)]
    pub pairs: usize,
    /// Set-ups in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// How long one set-up may take before it counts as an error, in milliseconds.
    #[arg(long, default_value_t = 20_000)]
    pub timeout_ms: u64,
    /// The notifier's base URL: the callees' event streams.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    pub events_url: reqwest::Url,
    /// The services' `AUTH_JWT_SECRET`, to mint the users' client tokens.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Processes whose CPU time is measured (as for the other scenarios).
    #[arg(long = "cpu-watch", value_name = "NAME|NAME:TEXT|LABEL=PID")]
    pub cpu_watch: Vec<crate::cpu::Watch>,
    /// Where to write the JSON report.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// Two users and their client tokens.
struct Pair {
    caller: String,
    callee: String,
    callee_id: Uuid,
}

/// Seeds `2 × pairs` profiles and one Android device per callee (so the notifier has a
/// device to push to), in one transaction.
async fn seed(database_url: &str, pairs: usize, secret: &[u8]) -> anyhow::Result<Vec<Pair>> {
    let (mut client, connection) = tokio_postgres::connect(database_url, NoTls)
        .await
        .context("connecting to PostgreSQL (--database-url)")?;
    let connection = tokio::spawn(connection);
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let callers: Vec<Uuid> = (0..pairs).map(|_| Uuid::new_v4()).collect();
    let callees: Vec<Uuid> = (0..pairs).map(|_| Uuid::new_v4()).collect();
    let tx = client.transaction().await?;
    for (ids, role) in [(&callers, "caller"), (&callees, "callee")] {
        tx.execute(
            "INSERT INTO profiles (id, username) \
             SELECT id, $2 || ord FROM unnest($1::uuid[]) WITH ORDINALITY AS v(id, ord)",
            &[ids, &format!("loadgen_{tag}_{role}_")],
        )
        .await
        .context("seeding the users (has call-signaling migrated this database?)")?;
    }
    tx.execute(
        "INSERT INTO push_devices (id, user_id, platform, kind, token) \
         SELECT gen_random_uuid(), id, 'android', 'standard', 'loadgen-' || id FROM unnest($1::uuid[]) AS v(id)",
        &[&callees],
    )
    .await
    .context("seeding the callees' devices")?;
    tx.commit().await.context("committing the seed")?;
    drop(client);
    let _ = connection.await;
    Ok(callers
        .iter()
        .zip(&callees)
        .map(|(&a, &b)| Pair {
            caller: format!("Bearer {}", auth::mint(secret, a, CLIENT_TOKEN_TTL_SECS)),
            callee: format!("Bearer {}", auth::mint(secret, b, CLIENT_TOKEN_TTL_SECS)),
            callee_id: b,
        })
        .collect())
}

/// What one set-up measured.
struct SetUp {
    initiate: Duration,
    ringing: Duration,
    total: Duration,
}

/// Reads the callee's event stream until a `call.ringing` frame arrives.
async fn wait_ringing(stream: &mut reqwest::Response) -> Result<(), String> {
    let mut seen = String::new();
    loop {
        match stream.chunk().await {
            Ok(Some(chunk)) => {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains("event: call.ringing") {
                    return Ok(());
                }
                if seen.contains("event: call.failed") {
                    return Err("call failed instead of ringing".into());
                }
                // Keep only the tail: a frame may be split across chunks.
                if seen.len() > 4096 {
                    seen.drain(..seen.len() - 256);
                }
            }
            Ok(None) => return Err("event stream closed".into()),
            Err(e) => return Err(format!("event stream: {}", kind_of(&e))),
        }
    }
}

/// One call from initiation to the callee's accepted answer.
async fn set_up(
    http: &reqwest::Client,
    base: &reqwest::Url,
    events: &reqwest::Url,
    pair: &Pair,
    timeout: Duration,
) -> Result<SetUp, String> {
    // The callee's app is open: its stream is connected before the call is placed.
    let mut stream = http
        .get(events.join("/v1/events").map_err(|e| e.to_string())?)
        .header("authorization", &pair.callee)
        .send()
        .await
        .map_err(|e| format!("events: {}", kind_of(&e)))?;
    if stream.status() != 200 {
        return Err(format!("events {}", stream.status().as_u16()));
    }
    // The first frame (`retry:`) says the stream is registered.
    stream
        .chunk()
        .await
        .map_err(|e| format!("events: {}", kind_of(&e)))?;
    let started = Instant::now();
    let res = http
        .post(base.join("/v1/calls").map_err(|e| e.to_string())?)
        .header("authorization", &pair.caller)
        .json(&json!({"calleeId": pair.callee_id, "callType": "audio_call"}))
        .send()
        .await
        .map_err(|e| format!("initiate: {}", kind_of(&e)))?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status != 201 {
        return Err(format!(
            "initiate {} {}",
            status.as_u16(),
            body["errorCode"].as_str().unwrap_or("")
        ));
    }
    let initiate = started.elapsed();
    let id = body["call"]["id"].as_str().unwrap_or_default().to_owned();
    tokio::time::timeout(timeout, wait_ringing(&mut stream))
        .await
        .map_err(|_| "never rang".to_owned())??;
    let ringing = started.elapsed();
    drop(stream);
    let res = http
        .post(
            base.join(&format!("/v1/calls/{id}/accept"))
                .map_err(|e| e.to_string())?,
        )
        .header("authorization", &pair.callee)
        .send()
        .await
        .map_err(|e| format!("accept: {}", kind_of(&e)))?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err(format!(
            "accept {} {}",
            status.as_u16(),
            body["errorCode"].as_str().unwrap_or("")
        ));
    }
    Ok(SetUp {
        initiate,
        ringing,
        total: started.elapsed(),
    })
}

fn kind_of(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

/// Seeds, runs every set-up with `concurrency` in flight, and reports.
pub async fn run(args: Args) -> anyhow::Result<()> {
    eprintln!("call-storm: seeding {} pairs", args.pairs);
    let pairs = seed(&args.database_url, args.pairs, args.jwt_secret.as_bytes()).await?;
    let concurrency = usize::from(args.concurrency);
    let http = crate::engine::client(concurrency * 2, Duration::from_millis(args.timeout_ms))?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let busy_before = crate::cpu::machine_busy(Duration::from_secs(1)).await;
    let cpu_before = crate::cpu::snapshot(&args.cpu_watch);
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency));
    let base = Arc::new(args.url.clone());
    let events = Arc::new(args.events_url.clone());
    let http = Arc::new(http);
    let mut tasks = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let permit = gate.clone().acquire_owned().await?;
        let (http, base, events) = (http.clone(), base.clone(), events.clone());
        tasks.push(tokio::spawn(async move {
            let r = set_up(&http, &base, &events, &pair, timeout).await;
            drop(permit);
            r
        }));
    }
    let mut outcome = Outcome::empty();
    let mut initiate_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ringing_us = initiate_us.clone();
    for t in tasks {
        match t.await? {
            Ok(s) => {
                initiate_us.saturating_record(s.initiate.as_micros().max(1) as u64);
                ringing_us.saturating_record(s.ringing.as_micros().max(1) as u64);
                outcome.record(Ok(()), s.total);
            }
            Err(kind) => outcome.record(Err(kind), Duration::ZERO),
        }
    }
    outcome.elapsed = clock.elapsed();
    let cpu =
        crate::cpu::usage(&cpu_before, &crate::cpu::snapshot(&args.cpu_watch)).map(|mut c| {
            c.machine_busy_before_pct = busy_before;
            c
        });
    let params = json!({
        "url": args.url.as_str(),
        "pairs": args.pairs,
        "concurrency": args.concurrency,
        "eventsUrl": args.events_url.as_str(),
        "threads": args.threads,
        "measures": "per call: POST /v1/calls → call.ringing on the callee's event stream (push in the notifier's log mode) → accept answered",
        "initiateLatencyMs": LatencyMs::from_micros(&initiate_us),
        "ringingLatencyMs": LatencyMs::from_micros(&ringing_us),
    });
    let report = Report::new("call-storm", started_at, params, &outcome, cpu);
    match &args.out {
        Some(path) => {
            report.write(path)?;
            println!("{}", report.summary());
            eprintln!("call-storm: report written to {}", path.display());
        }
        None => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("{}", report.summary());
        }
    }
    Ok(())
}
