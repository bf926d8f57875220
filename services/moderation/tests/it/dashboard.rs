//! The operators' dashboard: the public page shell and its assets over HTTP, and the browser
//! test — headless Chromium (Debian's package) driven by playwright-core
//! (`tests/browser/dashboard.mjs`) logs in with an operator's JWT, sees the live session this
//! test created, clicks Kill, confirms, and the session ends `admin_terminated` with its room
//! gone. Screenshots of every page land in `target/artefacts/ops-dashboard/`.
//!
//! The browser test fails, never skips, when Chromium or the script's `node_modules` are
//! missing: `scripts/test.sh` installs both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support;

/// `services/moderation/tests/browser`.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `<workspace>/target/artefacts/ops-dashboard` (under target/, so a clean clone stays clean).
fn artefact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("artefacts/ops-dashboard")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

async fn get(stack: &support::Stack, path: &str) -> reqwest::Response {
    stack
        .http
        .get(format!("{}{path}", stack.moderation))
        .send()
        .await
        .unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_page_shell_is_public_holds_no_data_and_is_never_cached_stale() {
    let stack = support::stack().await;
    for path in ["/ops", "/ops/"] {
        let res = get(&stack, path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&res, "cache-control"), "no-cache");
        assert!(header(&res, "content-security-policy").contains("default-src 'none'"));
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        assert_eq!(header(&res, "x-frame-options"), "DENY");
        let body = res.text().await.unwrap();
        assert!(body.contains("id=\"login-form\""), "the login form");
        assert!(!body.contains("{{v}}"), "the fingerprint is filled in");
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn assets_have_their_content_types_and_are_cached_by_fingerprint() {
    let stack = support::stack().await;
    let shell = get(&stack, "/ops").await.text().await.unwrap();
    for (name, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let res = get(&stack, &format!("/ops/assets/{name}")).await;
        assert_eq!(res.status(), 200, "{name}");
        assert_eq!(header(&res, "content-type"), content_type, "{name}");
        assert_eq!(
            header(&res, "cache-control"),
            "public, max-age=31536000, immutable",
            "{name}"
        );
        assert!(header(&res, "etag").starts_with('"'), "{name}");
        assert!(!res.bytes().await.unwrap().is_empty(), "{name}");
    }
    // The shell links the versions it was built with.
    assert!(shell.contains("/ops/assets/app.js?v="));
    // Unknown assets, and paths that try to leave the asset table.
    for path in [
        "/ops/assets/nope.js",
        "/ops/assets/..%2Flib.rs",
        "/ops/assets/app.js.map",
    ] {
        let res = get(&stack, path).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(header(&res, "cache-control"), "no-store", "{path}");
    }
    stack.shutdown().await;
}

/// Fails (with what to do) when Chromium or playwright-core is missing: a browser test that
/// skips itself would pass on a machine that never ran it.
fn browser_prerequisites() -> PathBuf {
    let chromium = chromium();
    assert!(
        chromium.exists(),
        "{} is missing: `apt-get install -y chromium` (scripts/test.sh does it)",
        chromium.display()
    );
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .exists(),
        "{}/node_modules is missing: `npm ci` there (scripts/test.sh does it)",
        dir.display()
    );
    chromium
}

#[tokio::test]
async fn an_operator_kills_a_live_session_from_the_dashboard_in_headless_chromium() {
    let chromium = browser_prerequisites();
    let stack = support::stack().await;
    let operator = stack.operator().await;
    let creator = stack.user("creator", true, None).await;
    let viewer = stack.user("viewer", false, None).await;
    let session = stack.live_session(creator, "video_live").await;
    stack.join_session(viewer, session).await;
    // Something for the session page to show, and a report for the incidents page to resolve.
    let (status, body) = stack
        .call(
            reqwest::Method::POST,
            format!("{}/v1/sessions/{session}/messages", stack.sessions),
            viewer,
            Some(json!({"body": "hello from the browser test"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = stack
        .md(
            reqwest::Method::POST,
            "/v1/reports",
            viewer,
            Some(
                json!({"reportedUserId": creator, "sessionId": session, "reason": "spam",
                        "details": "filed by the dashboard test"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let report: uuid::Uuid = body["report"]["id"].as_str().unwrap().parse().unwrap();
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

    let artefacts = artefact_dir();
    let _ = std::fs::remove_dir_all(&artefacts);
    std::fs::create_dir_all(&artefacts).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(150),
        tokio::process::Command::new("node")
            .arg(browser_dir().join("dashboard.mjs"))
            .arg(&stack.moderation)
            .arg(testkit::token_for(operator))
            .arg(session.to_string())
            .arg(&artefacts)
            .arg(testkit::token_for(viewer))
            .env("CHROMIUM_PATH", &chromium)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test finishes")
    .expect("node runs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed ({}); screenshots in {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status,
        artefacts.display()
    );
    println!("{stdout}");

    // The click ended the session the way an operator's terminate does.
    let (status, reason): (String, Option<String>) =
        testkit::eventually(Duration::from_secs(20), "the session to end", || async {
            let row = stack
                .sql()
                .await
                .query_one(
                    "SELECT status, end_reason FROM live_sessions WHERE id = $1",
                    &[&session],
                )
                .await
                .unwrap();
            let status: String = row.get(0);
            (status == "ended").then(|| (status, row.get(1)))
        })
        .await;
    assert_eq!(status, "ended");
    assert_eq!(reason.as_deref(), Some("admin_terminated"));
    // The Dismiss click resolved the report.
    let report_status: String = stack
        .sql()
        .await
        .query_one("SELECT status FROM live_reports WHERE id = $1", &[&report])
        .await
        .unwrap()
        .get(0);
    assert_eq!(report_status, "dismissed");
    testkit::eventually(Duration::from_secs(20), "the room to be gone", || async {
        stack.room_identities(&room).await.is_none().then_some(())
    })
    .await;

    // A screenshot of every page.
    for name in [
        "01-login",
        "03-live-overview",
        "04-session-detail",
        "05-usage",
        "06-incidents",
        "07-incidents-resolved",
        "08-bans",
        "09-kill-confirm",
        "10-after-kill",
    ] {
        let file = artefacts.join(format!("{name}.png"));
        let len = std::fs::metadata(&file)
            .unwrap_or_else(|_| panic!("{} saved", file.display()))
            .len();
        assert!(len > 1000, "{} is a real picture", file.display());
    }
    stack.shutdown().await;
}
