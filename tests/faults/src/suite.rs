//! The command line, the trials' plans, and the summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use system::Svc;

use crate::infra::Infra;
use crate::inject::Fault;
use crate::trial::{self, Outcome, Plan};

/// The bounded form (CI) runs this many trials, the long form (`--long`) that many.
pub const BOUNDED_TRIALS: usize = 3;
pub const LONG_TRIALS: usize = 50;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "faults",
    about = "The fault suite: a scripted workload under faults, then the promises of DESIGN.md checked"
)]
pub struct Args {
    /// Trials to run (default 3; 50 with --long).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Seed of every random choice; printed, so that a failing run can be replayed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The long form: more trials (50 unless --trials says), more kills per trial.
    #[arg(long)]
    pub long: bool,
}

/// The faults of each trial. Every kind in every run of three trials or more: the six
/// services killed once each over the first three trials (then in new rounds), NATS and
/// PostgreSQL restarted in each, and LiveKit slow beyond the services' timeout, failing,
/// and slow within the timeout in turn. The long form kills more per trial, keeps NATS
/// and PostgreSQL away longer (up to 8 and 15 s; the bounded form 2 and 2.5 s) and
/// crashes NATS (SIGKILL) in half of its restarts.
pub fn plans(seed: u64, trials: usize, long: bool) -> Vec<Plan> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut victims: Vec<Svc> = Vec::new();
    let (nats_max, pg_max, kill_max) = if long {
        (8_000, 15_000, 4_000)
    } else {
        (2_000, 2_500, 1_500)
    };
    (0..trials)
        .map(|index| {
            let kills = if long { rng.random_range(2..=4) } else { 2 };
            let mut faults = vec![
                Fault::NatsRestart {
                    down_ms: rng.random_range(500..=nats_max),
                    crash: long && rng.random_bool(0.5),
                },
                Fault::PgRestart {
                    down_ms: rng.random_range(500..=pg_max),
                },
            ];
            for _ in 0..kills {
                if victims.is_empty() {
                    victims = Svc::SERVICES.to_vec();
                    victims.shuffle(&mut rng);
                }
                faults.push(Fault::Kill9 {
                    svc: victims.pop().expect("victims"),
                    down_ms: rng.random_range(200..=kill_max),
                });
            }
            faults.push(match index % 3 {
                0 => Fault::LiveKitSlow(7_000),
                1 => Fault::LiveKitFailing,
                _ => Fault::LiveKitSlow(1_500),
            });
            faults.shuffle(&mut rng);
            Plan {
                index,
                seed: rng.random(),
                faults,
            }
        })
        .collect()
}

/// Runs the suite; the exit code is non-zero when a violation was found or a trial could
/// not run.
pub async fn run(args: Args) -> ExitCode {
    telemetry::install_crypto_providers();
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    let trials = args.trials.unwrap_or(if args.long {
        LONG_TRIALS
    } else {
        BOUNDED_TRIALS
    });
    println!(
        "fault suite: seed {seed}, {trials} trials (replay: cargo run -p faults -- --seed {seed} --trials {trials}{})",
        if args.long { " --long" } else { "" }
    );
    let started = Instant::now();
    let target = match system::stack::target_dir() {
        Ok(t) => t,
        Err(e) => return fail(&format!("no target directory: {e:#}")),
    };
    if let Err(e) = build_services() {
        return fail(&format!("{e:#}"));
    }
    let log_root = target.join("faults-logs").join(format!("seed-{seed}"));
    let _ = std::fs::remove_dir_all(&log_root);
    prune_logs(&target.join("faults-logs"), KEEP_LOGS - 1);
    if let Err(e) = std::fs::create_dir_all(&log_root) {
        return fail(&format!("creating {}: {e}", log_root.display()));
    }
    let mut infra = match Infra::start().await {
        Ok(i) => i,
        Err(e) => return fail(&format!("starting the suite's PostgreSQL and NATS: {e:#}")),
    };
    let mut outcomes = Vec::new();
    let mut error = None;
    for plan in plans(seed, trials, args.long) {
        println!(
            "trial {} (seed {}): {}",
            plan.index,
            plan.seed,
            plan.faults
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        match trial::run(&mut infra, &plan, &log_root).await {
            Ok(o) => {
                println!(
                    "trial {}: {} invariants checked, {} violations, {} requests ({} retried); {}, settled {}; {:.0?}",
                    plan.index,
                    o.report.checked,
                    o.report.violations.len(),
                    o.requests,
                    o.retries,
                    o.phases,
                    match (&o.settled, o.owed) {
                        (Ok(d), 0) => format!("in {d:.1?}"),
                        (Ok(d), n) => format!(
                            "in {d:.1?} ({n} events still owed by JetStream after a consumer's long ack wait)"
                        ),
                        (Err(_), _) => "never".into(),
                    },
                    o.elapsed
                );
                outcomes.push(o);
            }
            Err(e) => {
                error = Some(format!(
                    "trial {} (seed {}) could not run: {e:#}",
                    plan.index, plan.seed
                ));
                break;
            }
        }
    }
    infra.keep_logs(&log_root);
    drop(infra);
    let text = summary(seed, &outcomes, error.as_deref(), &log_root);
    print!("{text}");
    println!("({:.0?})", started.elapsed());
    let file = target.join("faults-summary.txt");
    if let Err(e) = std::fs::write(&file, &text) {
        eprintln!("could not write {}: {e}", file.display());
    }
    let violations: usize = outcomes.iter().map(|o| o.report.violations.len()).sum();
    if violations > 0 || error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("fault suite: {message}");
    ExitCode::from(2)
}

/// The summary: one line of totals, then every violation with its trial's seed and logs.
pub fn summary(
    seed: u64,
    outcomes: &[Outcome],
    error: Option<&str>,
    log_root: &std::path::Path,
) -> String {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for o in outcomes {
        for f in &o.plan.faults {
            *kinds.entry(f.kind()).or_default() += 1;
        }
    }
    let order = [
        "kill9",
        "nats restart",
        "pg restart",
        "livekit slow",
        "livekit failing",
    ];
    let faults: usize = kinds.values().sum();
    let checked: u64 = outcomes.iter().map(|o| o.report.checked).sum();
    let violations: usize = outcomes.iter().map(|o| o.report.violations.len()).sum();
    let mut text = format!(
        "fault suite: trials {}, faults injected {faults} ({}), invariants checked {checked}, violations {violations}\n",
        outcomes.len(),
        order
            .iter()
            .map(|k| format!("{k} {}", kinds.get(k).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut rules: BTreeMap<&str, u64> = BTreeMap::new();
    for o in outcomes {
        for (rule, n) in &o.report.by_rule {
            *rules.entry(rule).or_default() += n;
        }
    }
    let _ = writeln!(
        text,
        "checks per rule: {}",
        rules
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for o in outcomes.iter().filter(|o| !o.report.violations.is_empty()) {
        let _ = writeln!(
            text,
            "trial {} (run seed {seed}, trial seed {}; faults: {}); logs in {}:",
            o.plan.index,
            o.plan.seed,
            o.plan
                .faults
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            o.log_dir.display()
        );
        for v in &o.report.violations {
            let _ = writeln!(text, "  violation {v}");
        }
    }
    if let Some(e) = error {
        let _ = writeln!(text, "error: {e} (logs in {})", log_root.display());
    }
    text
}

/// The logs of this many runs are kept (`target/faults-logs/seed-*`): this one and the
/// newest before it.
const KEEP_LOGS: usize = 10;

/// Removes the log directories of older runs, keeping the `keep` newest.
fn prune_logs(dir: &std::path::Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut runs: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (_, path) in runs.into_iter().skip(keep) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// Builds the service binaries next to this one (cargo does nothing when they are up to
/// date), unless `SYSTEM_BIN_DIR` points at binaries built elsewhere.
fn build_services() -> anyhow::Result<()> {
    if std::env::var_os("SYSTEM_BIN_DIR").is_some() {
        return Ok(());
    }
    let dir = system::stack::bin_dir()?;
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--quiet"]);
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    for svc in std::iter::once(Svc::LivekitSim).chain(Svc::SERVICES) {
        cmd.args(["-p", svc.bin()]);
    }
    let status = cmd.status()?;
    anyhow::ensure!(status.success(), "building the services failed: {status}");
    Ok(())
}
