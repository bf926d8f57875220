//! Every bad input gets its documented error, and nothing is stored.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Limits, TestApp, assert_error, spawn_app, spawn_app_with};

async fn post_raw(
    app: &TestApp,
    auth: Option<String>,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(format!("{}/v1/tokens", app.url))
        .header("content-type", content_type)
        .body(body);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_credentials_are_unauthorized() {
    let app = spawn_app().await;
    let viewer = testkit::profile(&app.db, "viewer", false, None).await;
    let body = serde_json::to_vec(&json!({"sessionId": Uuid::new_v4()})).unwrap();
    let cases = [
        None,
        Some("Bearer".to_string()),
        Some("Basic abc".to_string()),
        Some(testkit::token_for(viewer)), // no Bearer prefix
        Some("Bearer not-a-jwt".to_string()),
        Some(format!(
            "Bearer {}",
            auth::mint(b"another-secret", viewer, 3600)
        )),
        Some(format!(
            "Bearer {}",
            auth::mint(testkit::JWT_SECRET.as_bytes(), viewer, -3600)
        )),
        // A valid token for a user without a profile.
        Some(format!("Bearer {}", testkit::token_for(Uuid::new_v4()))),
    ];
    for auth in cases {
        let (status, body) = post_raw(&app, auth.clone(), "application/json", body.clone()).await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn malformed_bodies_are_validation_errors() {
    let app = spawn_app().await;
    let viewer = testkit::profile(&app.db, "viewer", false, None).await;
    let auth = Some(format!("Bearer {}", testkit::token_for(viewer)));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{".to_vec()),
        ("application/json", b"[]".to_vec()),
        ("application/json", b"{}".to_vec()),
        ("application/json", br#"{"sessionId": 42}"#.to_vec()),
        (
            "application/json",
            br#"{"sessionId": "not-a-uuid"}"#.to_vec(),
        ),
        (
            "application/json",
            format!(r#"{{"sessionId":"{0}","callId":"{0}"}}"#, Uuid::new_v4()).into_bytes(),
        ),
        (
            "text/plain",
            format!(r#"{{"sessionId":"{}"}}"#, Uuid::new_v4()).into_bytes(),
        ),
    ];
    for (ct, body) in cases {
        let (status, resp) = post_raw(&app, auth.clone(), ct, body.clone()).await;
        assert_error(status, &resp, 422, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = spawn_app().await;
    let viewer = testkit::profile(&app.db, "viewer", false, None).await;
    let big = format!(
        r#"{{"sessionId":"{}","pad":"{}"}}"#,
        Uuid::new_v4(),
        "x".repeat(70 * 1024)
    );
    let (status, body) = post_raw(
        &app,
        Some(format!("Bearer {}", testkit::token_for(viewer))),
        "application/json",
        big.into_bytes(),
    )
    .await;
    assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn unknown_routes_get_the_envelope() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(format!("{}/v1/nothing", app.url))
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert_error(status, &res.json().await.unwrap(), 404, "NOT_FOUND");
}

#[tokio::test]
async fn users_are_rate_limited_with_retry_after() {
    let app = spawn_app_with(Limits {
        per_user: 3,
        per_ip: 1000,
    })
    .await;
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let viewer = testkit::profile(&app.db, "viewer", false, None).await;
    let other = testkit::profile(&app.db, "other", false, None).await;
    let session = app
        .session(creator, "video_live", "public", None, "live")
        .await;
    for _ in 0..3 {
        assert_eq!(app.session_token(viewer, session).await.0, 200);
    }
    let res = app
        .http
        .post(format!("{}/v1/tokens", app.url))
        .bearer_auth(testkit::token_for(viewer))
        .json(&json!({"sessionId": session}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_error(
        StatusCode::TOO_MANY_REQUESTS,
        &res.json().await.unwrap(),
        429,
        "RATE_LIMITED",
    );
    // Another user is not affected.
    assert_eq!(app.session_token(other, session).await.0, 200);
}

#[tokio::test]
async fn client_addresses_behind_the_gateway_are_rate_limited() {
    let app = spawn_app_with(Limits {
        per_user: 1000,
        per_ip: 2,
    })
    .await;
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let session = app
        .session(creator, "video_live", "public", None, "live")
        .await;
    let send = |ip: &'static str| {
        app.http
            .post(format!("{}/v1/tokens", app.url))
            .bearer_auth(testkit::token_for(creator))
            .header("x-forwarded-for", ip)
            .json(&json!({"sessionId": session}))
            .send()
    };
    assert_eq!(send("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(send("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(send("203.0.113.1").await.unwrap().status(), 429);
    // Another client behind the same gateway has its own budget.
    assert_eq!(send("203.0.113.2").await.unwrap().status(), 200);
}

#[tokio::test]
async fn health_and_metrics() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(format!("{}/health", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], json!("healthy"));
    assert_eq!(body["checks"]["database"]["status"], json!("ok"));
    assert_eq!(body["checks"]["nats"]["status"], json!("ok"));
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let session = app
        .session(creator, "video_live", "public", None, "live")
        .await;
    assert_eq!(app.session_token(creator, session).await.0, 200);
    let text = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("tokens_issued_total"), "{text}");
    assert!(text.contains("http_request_duration_seconds"), "{text}");
}
