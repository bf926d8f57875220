//! The `ipelya-ops` binary, run as a process against a whole stack (moderation,
//! session-manager, token-issuer, webhook-ingest, livekit-sim) on real HTTP, with the real
//! PostgreSQL and NATS: what it prints, what it changes, and its exit codes.

// moderation's harness, shared rather than copied; this binary uses only part of it.
#[allow(dead_code)]
#[path = "../../../../services/moderation/tests/it/support.rs"]
mod support;

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

/// What one run of the CLI gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("--json output is JSON ({e}): {}", self.stdout))
    }
}

/// Runs `ipelya-ops --url <url> [--token <token>] <args>` with no IPELYA_OPS_* inherited.
async fn cli(url: &str, token: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ipelya-ops"));
    cmd.env_remove("IPELYA_OPS_URL")
        .env_remove("IPELYA_OPS_TOKEN")
        .arg("--url")
        .arg(url);
    if let Some(t) = token {
        cmd.arg("--token").arg(t);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.args(args).output())
        .await
        .expect("the CLI finishes")
        .expect("the CLI runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn assert_ok(run: &Run) {
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
}

#[track_caller]
fn assert_fails(run: &Run, code: i32, needle: &str) {
    assert_eq!(
        run.code, code,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.is_empty(), "nothing on stdout: {}", run.stdout);
    assert!(
        run.stderr.starts_with("error: ") && run.stderr.contains(needle),
        "stderr names {needle}: {}",
        run.stderr
    );
}

async fn session_row(stack: &support::Stack, id: Uuid) -> (String, Option<String>) {
    let row = stack
        .sql()
        .await
        .query_one(
            "SELECT status, end_reason FROM live_sessions WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn sessions_lists_live_sessions_and_terminate_ends_one() {
    let stack = support::stack().await;
    let ops = testkit::token_for(stack.operator().await);
    let creator = stack.user("creator", true, None).await;
    let session = stack.live_session(creator, "video_live").await;
    let sid = session.to_string();

    let table = cli(&stack.moderation, Some(&ops), &["sessions"]).await;
    assert_ok(&table);
    assert!(table.stdout.starts_with("ID "), "{}", table.stdout);
    assert!(table.stdout.contains(&sid), "{}", table.stdout);
    assert!(table.stdout.contains("video_live"), "{}", table.stdout);
    let listed = cli(&stack.moderation, Some(&ops), &["--json", "sessions"]).await;
    assert_ok(&listed);
    let ids: Vec<String> = listed.json()["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, vec![sid.clone()]);

    let detail = cli(&stack.moderation, Some(&ops), &["session", &sid]).await;
    assert_ok(&detail);
    assert!(detail.stdout.contains(&sid), "{}", detail.stdout);

    let done = cli(&stack.moderation, Some(&ops), &["terminate", &sid]).await;
    assert_ok(&done);
    assert!(done.stdout.contains("terminated"), "{}", done.stdout);
    testkit::eventually(Duration::from_secs(20), "the session to end", || async {
        let (status, reason) = session_row(&stack, session).await;
        (status == "ended").then_some(reason)
    })
    .await
    .filter(|r| r == "admin_terminated")
    .expect("ended with admin_terminated");
    let after = cli(&stack.moderation, Some(&ops), &["sessions"]).await;
    assert_ok(&after);
    assert_eq!(after.stdout, "no sessions\n");

    // Terminating it again is refused by the state machine; an unknown one is not found.
    let again = cli(&stack.moderation, Some(&ops), &["terminate", &sid]).await;
    assert!(
        again.code == 5 || again.code == 4,
        "refused: {} {}",
        again.code,
        again.stderr
    );
    let unknown = Uuid::new_v4().to_string();
    assert_fails(
        &cli(&stack.moderation, Some(&ops), &["terminate", &unknown]).await,
        4,
        "HTTP 404",
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn kick_removes_a_participant_from_the_room() {
    let stack = support::stack().await;
    let ops = testkit::token_for(stack.operator().await);
    let creator = stack.user("creator", true, None).await;
    let viewer = stack.user("viewer", false, None).await;
    let session = stack.live_session(creator, "video_live").await;
    stack.join_session(viewer, session).await;
    let room: String = stack
        .sql()
        .await
        .query_one(
            "SELECT room_name FROM live_sessions WHERE id = $1",
            &[&session],
        )
        .await
        .unwrap()
        .get(0);

    let run = cli(
        &stack.moderation,
        Some(&ops),
        &["kick", &session.to_string(), &viewer.to_string()],
    )
    .await;
    assert_ok(&run);
    testkit::eventually(Duration::from_secs(20), "the viewer to be gone", || async {
        let ids = stack.room_identities(&room).await.unwrap_or_default();
        (!ids.contains(&viewer.to_string())).then_some(())
    })
    .await;
    stack.shutdown().await;
}

#[tokio::test]
async fn ban_and_unban_set_and_clear_the_global_ban() {
    let stack = support::stack().await;
    let ops = testkit::token_for(stack.operator().await);
    let user = stack.user("troll", false, None).await;
    let uid = user.to_string();
    let banned_until = || async {
        let row = stack
            .sql()
            .await
            .query_one(
                "SELECT banned_until > now() FROM profiles WHERE id = $1",
                &[&user],
            )
            .await
            .unwrap();
        row.get::<_, Option<bool>>(0).unwrap_or(false)
    };

    let run = cli(
        &stack.moderation,
        Some(&ops),
        &["ban", &uid, "--hours", "24", "--reason", "spam"],
    )
    .await;
    assert_ok(&run);
    assert!(run.stdout.contains("banned for 24 h"), "{}", run.stdout);
    assert!(banned_until().await);

    let bans = cli(&stack.moderation, Some(&ops), &["bans"]).await;
    assert_ok(&bans);
    assert!(
        bans.stdout.starts_with("global bans: 1\n"),
        "{}",
        bans.stdout
    );
    assert!(bans.stdout.contains(&uid), "{}", bans.stdout);

    assert_ok(&cli(&stack.moderation, Some(&ops), &["unban", &uid]).await);
    assert!(!banned_until().await);
    let bans = cli(&stack.moderation, Some(&ops), &["--json", "bans"]).await;
    assert_eq!(bans.json()["bans"]["global"], json!([]));

    // Bad input is refused before anything is sent, with clap's exit code.
    let bad = cli(
        &stack.moderation,
        Some(&ops),
        &["ban", "not-a-uuid", "--hours", "1", "--reason", "x"],
    )
    .await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let missing = cli(&stack.moderation, Some(&ops), &["ban", &uid]).await;
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    // The service's validation: zero hours.
    let zero = cli(
        &stack.moderation,
        Some(&ops),
        &["ban", &uid, "--hours", "0", "--reason", "x"],
    )
    .await;
    assert_fails(&zero, 5, "VALIDATION_ERROR");
    assert!(!banned_until().await);
    stack.shutdown().await;
}

#[tokio::test]
async fn the_kill_switch_turns_new_sessions_off_and_on() {
    let stack = support::stack().await;
    let ops = testkit::token_for(stack.operator().await);
    let creator = stack.user("creator", true, None).await;
    let create = || {
        stack.create_session(
            creator,
            json!({"sessionType": "audio_room", "title": "t", "accessType": "public"}),
        )
    };

    let on = cli(&stack.moderation, Some(&ops), &["kill-switch", "on"]).await;
    assert_ok(&on);
    assert!(on.stdout.contains("ON"), "{}", on.stdout);
    let (status, body) = create().await;
    support::assert_error(status, &body, 503, "LIVE_DISABLED");

    let status = cli(&stack.moderation, Some(&ops), &["kill-switch", "status"]).await;
    assert_ok(&status);
    assert!(status.stdout.contains("ON"), "{}", status.stdout);

    assert_ok(&cli(&stack.moderation, Some(&ops), &["kill-switch", "off"]).await);
    let status = cli(
        &stack.moderation,
        Some(&ops),
        &["--json", "kill-switch", "status"],
    )
    .await;
    assert_eq!(
        status.json()["config"]["liveSessionsDisabled"],
        json!(false)
    );
    let (status, body) = create().await;
    assert_eq!(status, 201, "{body}");

    let bad = cli(&stack.moderation, Some(&ops), &["kill-switch", "maybe"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    stack.shutdown().await;
}

#[tokio::test]
async fn usage_daily_top_creators_and_problems_answer() {
    let stack = support::stack().await;
    let ops = testkit::token_for(stack.operator().await);
    let creator = stack.user("creator", true, None).await;
    stack.live_session(creator, "video_live").await;

    let usage = cli(&stack.moderation, Some(&ops), &["usage"]).await;
    assert_ok(&usage);
    assert!(
        usage.stdout.contains("participant minutes"),
        "{}",
        usage.stdout
    );
    assert!(usage.stdout.contains("/ 5000"), "{}", usage.stdout);
    let json = cli(
        &stack.moderation,
        Some(&ops),
        &["usage", "--json", "--month", "2026-01"],
    )
    .await;
    assert_ok(&json);
    let u = &json.json()["usage"];
    assert_eq!(u["month"], json!("2026-01"));
    assert_eq!(u["quotaParticipantMinutes"], json!(5000));
    let bad_month = cli(
        &stack.moderation,
        Some(&ops),
        &["usage", "--month", "2026-13"],
    )
    .await;
    assert_fails(&bad_month, 5, "VALIDATION_ERROR");

    for args in [
        &["daily"][..],
        &["daily", "--days", "30", "--json"],
        &["top-creators"],
        &["problems"],
        &["recent-creators", "--minutes", "60"],
    ] {
        let run = cli(&stack.moderation, Some(&ops), args).await;
        assert_ok(&run);
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn reports_are_listed_and_resolved() {
    let stack = support::stack().await;
    let ops = testkit::token_for(stack.operator().await);
    let reporter = stack.user("reporter", false, None).await;
    let reported = stack.user("reported", false, None).await;
    let (status, body) = stack
        .md(
            reqwest::Method::POST,
            "/v1/reports",
            reporter,
            Some(json!({"reportedUserId": reported, "reason": "spam"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let report = body["report"]["id"].as_str().expect("report id").to_owned();

    let list = cli(&stack.moderation, Some(&ops), &["reports"]).await;
    assert_ok(&list);
    assert!(list.stdout.contains(&report), "{}", list.stdout);

    let run = cli(&stack.moderation, Some(&ops), &["resolve", &report, "warn"]).await;
    assert_ok(&run);
    let status: String = stack
        .sql()
        .await
        .query_one(
            "SELECT status FROM live_reports WHERE id = $1::text::uuid",
            &[&report],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "warned");
    let empty = cli(&stack.moderation, Some(&ops), &["reports"]).await;
    assert_eq!(empty.stdout, "no reports\n");
    let bad = cli(
        &stack.moderation,
        Some(&ops),
        &["resolve", &report, "shout"],
    )
    .await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    stack.shutdown().await;
}

#[tokio::test]
async fn errors_are_clear_and_have_their_exit_codes() {
    let stack = support::stack().await;
    let user = testkit::token_for(stack.user("someone", false, None).await);

    // Not an operator: 403.
    assert_fails(
        &cli(&stack.moderation, Some(&user), &["sessions"]).await,
        3,
        "FORBIDDEN",
    );
    // A token that is not valid: 401.
    assert_fails(
        &cli(&stack.moderation, Some("not.a.jwt"), &["sessions"]).await,
        3,
        "UNAUTHORIZED",
    );
    // No token at all: a command-line error naming the option and its variable.
    let none = cli(&stack.moderation, None, &["sessions"]).await;
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(none.stderr.contains("--token"), "{}", none.stderr);
    // Nobody listening.
    let port = support::listener().local_addr().unwrap().port();
    assert_fails(
        &cli(
            &format!("http://127.0.0.1:{port}"),
            Some(&user),
            &["sessions"],
        )
        .await,
        6,
        "cannot connect",
    );
    // A URL that is not one.
    let bad = cli("localhost:8084", Some(&user), &["sessions"]).await;
    assert_fails(&bad, 2, "--url");
    stack.shutdown().await;
}

#[tokio::test]
async fn the_environment_gives_url_and_token() {
    let stack = support::stack().await;
    let ops = testkit::token_for(stack.operator().await);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ipelya-ops"))
        .env("IPELYA_OPS_URL", &stack.moderation)
        .env("IPELYA_OPS_TOKEN", &ops)
        .args(["--json", "sessions"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["success"], json!(true));
    stack.shutdown().await;
}
