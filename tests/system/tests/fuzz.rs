//! Schemathesis against every service's own `GET /openapi.json`, on the whole stack (one
//! process per service): no 5xx, no answer outside its documented statuses, content types
//! and schemas. Bounded by `FUZZ_EXAMPLES` (examples per operation) and `FUZZ_SERVICES`
//! (comma-separated binaries, default all six); the long run is in `tests/system/fuzz/README.md`.
//!
//! The CLI is `SCHEMATHESIS`, else `target/fuzz-venv/bin/schemathesis`; without it the test
//! fails and says how to install it (a fuzz run that silently did not run proves nothing).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use system::{Stack, StackConfig, Svc};

/// Examples per operation unless `FUZZ_EXAMPLES` says otherwise: enough to hit every
/// documented status of every route, small enough for the test command on two cores.
const DEFAULT_EXAMPLES: u32 = 20;

/// One service's run never takes longer than this, however slow the machine (it is killed).
const RUN_LIMIT: Duration = Duration::from_secs(20 * 60);

/// What must hold for every answer. (`positive_data_acceptance` is not among them: a valid
/// body naming an unknown id is refused with 404, as it should be.)
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      negative_data_rejection";

/// Who calls each service: the profile whose routes it exercises.
#[derive(Clone, Copy)]
enum Caller {
    /// A creator (`is_creator`) with a wallet.
    Creator,
    /// An ordinary user with plenty of coins (pay-per-view, gifts).
    Viewer,
    /// An operator (`role = 'ops'`).
    Ops,
    /// No client token: the hooks sign each body as LiveKit would.
    LiveKit,
}

fn caller_of(svc: Svc) -> Caller {
    match svc {
        Svc::SessionManager => Caller::Creator,
        Svc::Moderation => Caller::Ops,
        Svc::WebhookIngest => Caller::LiveKit,
        _ => Caller::Viewer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_every_service_against_its_own_openapi_document() {
    let cli = schemathesis_cli();
    let services = services_to_fuzz();
    let examples: u32 = env_or("FUZZ_EXAMPLES", DEFAULT_EXAMPLES);
    build_services();

    let (config, db) = StackConfig::fresh().await.expect("stack config");
    // The fuzzer is one client sending hundreds of requests a minute: the limits are
    // tested elsewhere and would turn most of its requests into 429s here.
    let config = config
        .with_env("RATE_LIMIT_USER_PER_MIN", "1000000")
        .with_env("RATE_LIMIT_IP_PER_MIN", "1000000")
        .with_env("CHAT_RATE_PER_MIN", "1000000");
    let stack = Stack::start(config).await.expect("the stack starts");

    let creator = testkit::profile(&db, "fuzz_creator", true, None).await;
    let viewer = testkit::profile(&db, "fuzz_viewer", false, None).await;
    let ops = testkit::profile(&db, "fuzz_ops", false, Some("ops")).await;
    let sql = db.sql().await;
    for (user, coins) in [(creator, 1_000_i64), (viewer, 1_000_000_000)] {
        sql.execute(
            "INSERT INTO coin_wallets (user_id, balance) VALUES ($1, $2)",
            &[&user, &coins],
        )
        .await
        .expect("wallet");
    }

    let reports = system::stack::target_dir()
        .expect("target dir")
        .join("fuzz-reports")
        .join(&stack.config.namespace);
    std::fs::create_dir_all(&reports).expect("report dir");
    let mut failures = Vec::new();
    let started = Instant::now();
    for svc in services {
        let token = match caller_of(svc) {
            Caller::Creator => Some(creator),
            Caller::Viewer => Some(viewer),
            Caller::Ops => Some(ops),
            Caller::LiveKit => None,
        }
        .map(testkit::token_for);
        let run = Instant::now();
        let out = run_schemathesis(&cli, &stack, svc, token.as_deref(), examples, &reports).await;
        eprintln!(
            "fuzz {}: {} in {:.0?}\n{}",
            svc.bin(),
            if out.passed { "passed" } else { "FAILED" },
            run.elapsed(),
            summary(&out.output)
        );
        if !out.passed {
            failures.push(format!(
                "── {} ({}) ──\n{}\nits log: {}",
                svc.bin(),
                out.status,
                out.output,
                stack.log_path(svc).display()
            ));
        }
    }
    eprintln!(
        "fuzz: {} example(s) per operation, {:.0?} in all; reports in {}",
        examples,
        started.elapsed(),
        reports.display()
    );
    assert!(
        failures.is_empty(),
        "schemathesis found failures:\n{}",
        failures.join("\n\n")
    );
}

struct Outcome {
    passed: bool,
    status: String,
    output: String,
}

async fn run_schemathesis(
    cli: &Path,
    stack: &Stack,
    svc: Svc,
    token: Option<&str>,
    examples: u32,
    reports: &Path,
) -> Outcome {
    let base = stack.url(svc);
    let mut cmd = tokio::process::Command::new(cli);
    cmd.arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--url", &base])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples.to_string()])
        .args(["--workers", "2"])
        .args(["--request-timeout", "10"])
        // An event stream never ends: documented, not fuzzed.
        .args(["--exclude-path", "/v1/events"])
        .args(["--report", "junit"])
        .arg("--report-junit-path")
        .arg(reports.join(format!("{}.xml", svc.bin())))
        .arg("--no-color")
        // Its caches (`.hypothesis`, `.schemathesis`) go with the reports, not into the tree.
        .current_dir(reports)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", fuzz_dir())
        .env("FUZZ_LIVEKIT_KEY", testkit::LIVEKIT_KEY)
        .env("FUZZ_LIVEKIT_SECRET", testkit::LIVEKIT_SECRET)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(seed) = std::env::var("FUZZ_SEED").ok().filter(|s| !s.is_empty()) {
        cmd.args(["--seed", &seed]);
    }
    if let Some(token) = token {
        cmd.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let out = tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis on {} ran over {RUN_LIMIT:?}", svc.bin()))
        .unwrap_or_else(|e| panic!("running {}: {e}", cli.display()));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Outcome {
        passed: out.status.success(),
        status: out.status.to_string(),
        output,
    }
}

/// The lines of schemathesis' output worth a glance when it passed: its summary.
fn summary(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let from = lines
        .iter()
        .rposition(|l| l.contains("SUMMARY"))
        .unwrap_or(lines.len().saturating_sub(12));
    lines[from..].join("\n")
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// `SCHEMATHESIS`, else the venv the test command creates; a missing CLI fails the test.
fn schemathesis_cli() -> PathBuf {
    let cli = match std::env::var("SCHEMATHESIS") {
        Ok(path) if !path.is_empty() => PathBuf::from(path),
        _ => system::stack::target_dir()
            .expect("target dir")
            .join("fuzz-venv/bin/schemathesis"),
    };
    assert!(
        cli.is_file(),
        "schemathesis is not installed at {}: install it with\n\
         \x20   python3 -m venv target/fuzz-venv && \
         target/fuzz-venv/bin/pip install -r tests/system/fuzz/requirements.txt\n\
         (from the repository's root), or point SCHEMATHESIS at the CLI",
        cli.display()
    );
    cli
}

/// `FUZZ_SERVICES` (binaries, comma-separated), else every service.
fn services_to_fuzz() -> Vec<Svc> {
    let Some(list) = std::env::var("FUZZ_SERVICES")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        return Svc::SERVICES.to_vec();
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            Svc::SERVICES
                .into_iter()
                .find(|s| s.bin() == name)
                .unwrap_or_else(|| {
                    let known: Vec<_> = Svc::SERVICES.iter().map(|s| s.bin()).collect();
                    panic!("FUZZ_SERVICES: unknown service {name:?} (known: {known:?})")
                })
        })
        .collect()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        _ => default,
    }
}

/// The harness builds the binaries only when they are missing; the fuzzer must see the
/// code as it is now, so this brings them up to date (a no-op after a workspace build).
fn build_services() {
    let dir = system::stack::bin_dir().expect("bin dir");
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--locked"]);
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    for svc in std::iter::once(Svc::LivekitSim).chain(Svc::SERVICES) {
        cmd.args(["-p", svc.bin()]);
    }
    let status = cmd.status().expect("running cargo build");
    assert!(
        status.success(),
        "cargo build of the services failed: {status}"
    );
}
