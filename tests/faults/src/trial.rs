//! One trial: a database and a NATS namespace of its own on the suite's servers, the whole
//! stack started on them, the cast seeded, the workload run while the trial's faults are
//! injected at seeded moments, then — once everything has settled — the invariants checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use system::{Stack, StackConfig};

use crate::client::{Api, Urls};
use crate::infra::Infra;
use crate::inject::{Fault, Injector};
use crate::invariants::{self, Report, Settings};
use crate::snapshot::{self, Snapshot};
use crate::workload::{self, Lookup};

/// The stack's timings, short so that graces, ring timeouts and no-shows happen within a
/// trial (the rest of its environment is `system::Stack`'s).
pub const ENV: [(&str, &str); 9] = [
    ("HOST_GRACE_SECONDS", "3"),
    ("SESSION_NO_SHOW_SECONDS", "15"),
    ("CALL_PUSH_TIMEOUT_SECONDS", "5"),
    ("CALL_RING_TIMEOUT_SECONDS", "5"),
    ("CALL_JOIN_TIMEOUT_SECONDS", "5"),
    ("CALL_PARTY_GRACE_SECONDS", "3"),
    ("RECONCILE_INTERVAL_SECONDS", "3"),
    // Every request of the suite comes from one address.
    ("RATE_LIMIT_IP_PER_MIN", "100000"),
    ("RUST_LOG", "info"),
];

/// `HOST_GRACE_SECONDS` above.
const HOST_GRACE: chrono::Duration = chrono::Duration::seconds(3);

/// Actors start within this long of the trial's start.
const SPREAD: Duration = Duration::from_secs(4);
/// Faults land within this long of the trial's start (the workload runs until the last
/// one is over).
const FAULT_WINDOW: Duration = Duration::from_secs(20);
/// How long a client retries one request.
const RETRY_BUDGET: Duration = Duration::from_secs(45);
/// How long the system may take to settle after the workload (the longest wait is a
/// redelivery after a consumer's 30 s ack wait, when a killed process held an event).
const SETTLE: Duration = Duration::from_secs(90);

/// A trial to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub index: usize,
    pub seed: u64,
    pub faults: Vec<Fault>,
}

/// What a trial found.
pub struct Outcome {
    pub plan: Plan,
    pub report: Report,
    pub log_dir: PathBuf,
    pub elapsed: Duration,
    /// When each phase ended.
    pub phases: String,
    /// How long settling took, or what was still pending when it gave up.
    pub settled: Result<Duration, String>,
    /// Events JetStream still owes a consumer with a long ack wait (see
    /// `invariants::unhandled`).
    pub owed: usize,
    pub requests: u64,
    pub retries: u64,
}

/// Runs one trial on the suite's servers.
pub async fn run(infra: &mut Infra, plan: &Plan, log_root: &Path) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let database = format!("faults_{}_{}", std::process::id(), plan.index);
    infra.pg.create_database(&database).await?;
    let namespace = format!("faults{}t{}", std::process::id(), plan.index);
    let log_dir = log_root.join(format!("trial-{}", plan.index));
    std::fs::create_dir_all(&log_dir)?;
    let mut config = StackConfig {
        database_url: infra.pg.url(&database),
        nats_url: infra.nats.url(),
        namespace: namespace.clone(),
        env: Vec::new(),
        env_for: Default::default(),
        log_dir: log_dir.clone(),
    };
    for (k, v) in ENV {
        config = config.with_env(k, v);
    }
    let mut stack = Stack::start(config).await?;
    let db = infra.pg.connect(&database).await?;
    let (cast, initial_coins) = workload::seed(&db, &mut rng).await?;
    drop(db);
    let api = Api::new(Urls::of(&stack), RETRY_BUDGET)?;
    let lookup = Lookup {
        url: infra.pg.url(&database),
    };
    let stack_up = started.elapsed();
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let workload = {
        let (api, lookup, cast, seed) = (api.clone(), lookup.clone(), cast.clone(), rng.random());
        let stop = stop.clone();
        tokio::spawn(async move { workload::run(&api, &lookup, &cast, seed, SPREAD, stop).await })
    };
    let mut report = Report::default();
    let mut at: Vec<Duration> = plan
        .faults
        .iter()
        .map(|_| FAULT_WINDOW.mul_f64(rng.random_range(0.05..1.0)))
        .collect();
    at.sort();
    let probes = {
        let mut injector = Injector {
            stack: &mut stack,
            infra,
            api: api.clone(),
            lookup,
            cast,
            probes: Vec::new(),
        };
        for (fault, when) in plan.faults.iter().zip(at) {
            tokio::time::sleep(when.saturating_sub(t0.elapsed())).await;
            println!(
                "  trial {} +{:>5.1}s {fault}",
                plan.index,
                t0.elapsed().as_secs_f64()
            );
            injector.inject(*fault, &mut report).await;
        }
        injector.probes
    };
    stop.store(true, Ordering::Relaxed);
    let faults_done = t0.elapsed();
    let mut record = workload.await?;
    let workload_done = t0.elapsed();
    record.initial_coins = initial_coins;
    for p in probes {
        record.sessions.push(p.session);
        record.calls.push(p.call);
        record.gave_up.extend(p.gave_up);
    }
    let hangs = api.hangs.lock().expect("hangs").clone();
    report.check(
        "request.never_hangs",
        "every request",
        hangs.is_empty(),
        || hangs.join("; "),
    );
    // Settle, then look.
    let db = infra.pg.connect(&database).await?;
    let nats = async_nats::connect(infra.nats.url()).await?;
    let js = async_nats::jetstream::new(nats);
    let settle_started = Instant::now();
    let settled = loop {
        let snap = snapshot::load(&db, &js, &namespace).await?;
        let sim_pending = sim_pending(&api).await;
        let left = pending(&snap, sim_pending);
        if left.is_empty() {
            break Ok(settle_started.elapsed());
        }
        if settle_started.elapsed() > SETTLE {
            break Err(left.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    report.check(
        "system.settles",
        "after the workload",
        settled.is_ok(),
        || {
            format!(
                "still pending after {SETTLE:?}: {}",
                settled.as_ref().err().cloned().unwrap_or_default()
            )
        },
    );
    let snap = snapshot::load(&db, &js, &namespace).await?;
    report.absorb(invariants::check(
        &snap,
        &record,
        &Settings {
            host_grace: HOST_GRACE,
            patience: SETTLE,
        },
    ));
    let owed = invariants::unhandled(&snap, SETTLE).1.len();
    drop(stack);
    Ok(Outcome {
        plan: plan.clone(),
        report,
        log_dir,
        elapsed: started.elapsed(),
        phases: format!(
            "stack up in {stack_up:.1?}, faults over at +{faults_done:.1?}, workload over at +{workload_done:.1?}"
        ),
        settled,
        owed,
        requests: api.counters.requests.load(Ordering::Relaxed),
        retries: api.counters.retries.load(Ordering::Relaxed),
    })
}

async fn sim_pending(api: &Api) -> u64 {
    let url = format!("{}/sim/webhooks/pending", api.urls.livekit_sim);
    match api.once(None, reqwest::Method::GET, &url, None, None).await {
        Ok(a) => a.body["pending"].as_u64().unwrap_or(1),
        Err(_) => 1,
    }
}

/// Work the system still has to do: until none is left, checking would judge a moment,
/// not an end state.
fn pending(s: &Snapshot, sim_webhooks: u64) -> Vec<String> {
    let mut left = Vec::new();
    if sim_webhooks > 0 {
        left.push(format!("{sim_webhooks} webhooks in livekit-sim's queues"));
    }
    let running = s.sessions.iter().filter(|x| x.status != "ended").count();
    if running > 0 {
        left.push(format!("{running} sessions not ended"));
    }
    let active = s
        .calls
        .iter()
        .filter(|c| {
            c.status
                .parse::<domain::call::CallStatus>()
                .is_ok_and(|st| st.is_active())
        })
        .count();
    if active > 0 {
        left.push(format!("{active} calls active"));
    }
    let deadlines = s
        .deadlines
        .iter()
        .filter(|d| !d.subject.is_nil() && d.fired_at.is_none() && d.cancelled_at.is_none())
        .count();
    if deadlines > 0 {
        left.push(format!("{deadlines} deadlines pending"));
    }
    let unpublished = s.events.iter().filter(|e| !e.published).count();
    if unpublished > 0 {
        left.push(format!("{unpublished} outbox rows unpublished"));
    }
    let unhandled = invariants::unhandled(s, SETTLE).0.len();
    if unhandled > 0 {
        left.push(format!("{unhandled} events not yet handled"));
    }
    let livekit = s.events.iter().filter(|e| e.family() == "livekit").count() as i64;
    if livekit != s.webhooks {
        left.push(format!(
            "{} webhooks stored, {livekit} in the outbox",
            s.webhooks
        ));
    }
    left
}
