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
use uuid::Uuid;

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
    /// An ordinary user with plenty of coins (gifts).
    Viewer,
    /// An operator (`role = 'ops'`).
    Ops,
    /// A user with coins who is a party of the seeded calls (token-issuer's sessions and
    /// calls; apart from the viewer, whose calls call-signaling makes up as it goes).
    Member,
    /// No client token: the hooks sign each body as LiveKit would.
    LiveKit,
}

fn caller_of(svc: Svc) -> Caller {
    match svc {
        Svc::SessionManager => Caller::Creator,
        Svc::Moderation => Caller::Ops,
        Svc::WebhookIngest => Caller::LiveKit,
        Svc::TokenIssuer => Caller::Member,
        _ => Caller::Viewer,
    }
}

/// What the seeded ids are for: a session of each access type and an ended one, each with
/// a host of its own (a creator has one running session at most); a call of the member's
/// that has a room and one that is over.
struct Seeded {
    sessions: Vec<Uuid>,
    calls: Vec<Uuid>,
}

async fn seed_rooms(db: &testkit::TestDb, member: Uuid) -> Seeded {
    let sql = db.sql().await;
    let mut sessions = Vec::new();
    let mut hosts = Vec::new();
    for (i, (kind, access, price, status)) in [
        ("video_live", "public", None, "live"),
        ("audio_room", "subscribers_only", None, "live"),
        ("video_live", "pay_per_view", Some(5_i64), "live"),
        ("audio_room", "public", None, "ended"),
    ]
    .into_iter()
    .enumerate()
    {
        let host = testkit::profile(db, &format!("fuzz_host_{i}"), true, None).await;
        hosts.push(host);
        let id = Uuid::now_v7();
        let prefix = if kind == "video_live" {
            "live_video"
        } else {
            "audio_room"
        };
        let ended = status == "ended";
        sql.execute(
            "INSERT INTO live_sessions (id, creator_id, session_type, title, access_type, price_coins, status, room_name, started_at, ended_at, end_reason)
             VALUES ($1, $2, $3, 'fuzz', $4, $5, $6, $7, now(), CASE WHEN $8 THEN now() END, CASE WHEN $8 THEN 'host_ended' END)",
            &[&id, &host, &kind, &access, &price, &status, &format!("{prefix}_{id}"), &ended],
        )
        .await
        .expect("seed a session");
        sessions.push(id);
    }
    let mut calls = Vec::new();
    for (status, host) in [("accepted", hosts[0]), ("ended", hosts[1])] {
        let id = Uuid::now_v7();
        let ended = status == "ended";
        sql.execute(
            "INSERT INTO calls (id, caller_id, callee_id, call_type, status, room_name, answered_at, ended_at, ended_reason)
             VALUES ($1, $2, $3, 'video_call', $4, $5, now(), CASE WHEN $6 THEN now() END, CASE WHEN $6 THEN 'hangup' END)",
            &[&id, &member, &host, &status, &format!("call_{id}"), &ended],
        )
        .await
        .expect("seed a call");
        calls.push(id);
    }
    Seeded { sessions, calls }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_every_service_against_its_own_openapi_document() {
    let cli = schemathesis_cli();
    let services = services_to_fuzz();
    let examples: u32 = env_or("FUZZ_EXAMPLES", DEFAULT_EXAMPLES);

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
    let member = testkit::profile(&db, "fuzz_member", false, None).await;
    let sql = db.sql().await;
    for (user, coins) in [
        (creator, 1_000_i64),
        (viewer, 1_000_000_000),
        (member, 1_000_000_000),
    ] {
        sql.execute(
            "INSERT INTO coin_wallets (user_id, balance) VALUES ($1, $2)",
            &[&user, &coins],
        )
        .await
        .expect("wallet");
    }
    let seeded = seed_rooms(&db, member).await;
    let ids = serde_json::json!({ "sessionId": seeded.sessions, "callId": seeded.calls });

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
            Caller::Member => Some(member),
            Caller::LiveKit => None,
        }
        .map(testkit::token_for);
        let run = Instant::now();
        let run_for = RunFor {
            svc,
            token: token.as_deref(),
            ids: &ids,
        };
        let out = run_schemathesis(&cli, &stack, run_for, examples, &reports).await;
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

/// One service's run: who calls, with which seeded ids.
struct RunFor<'a> {
    svc: Svc,
    token: Option<&'a str>,
    ids: &'a serde_json::Value,
}

async fn run_schemathesis(
    cli: &Path,
    stack: &Stack,
    run: RunFor<'_>,
    examples: u32,
    reports: &Path,
) -> Outcome {
    let RunFor { svc, token, ids } = run;
    let base = stack.url(svc);
    let mut cmd = tokio::process::Command::new(cli);
    cmd.arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--url", &base])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples.to_string()])
        .args(["--workers", "2"])
        .args(["--request-timeout", "10"])
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
        .env("FUZZ_IDS", ids.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(seed) = std::env::var("FUZZ_SEED").ok().filter(|s| !s.is_empty()) {
        cmd.args(["--seed", &seed]);
    }
    if svc == Svc::Notifier {
        // An event stream never ends: documented, not fuzzed.
        cmd.args(["--exclude-path", "/v1/events"]);
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
