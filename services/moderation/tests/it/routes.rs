//! Every route: its answer, each bad input (documented error code, nothing stored) and each
//! forbidden actor.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{self, Stack, assert_error};

/// Every `/v1/ops/*` route with a body that would be valid.
fn ops_routes(session: Uuid, user: Uuid, report: Uuid) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/v1/ops/sessions".into(), None),
        (Method::GET, format!("/v1/ops/sessions/{session}"), None),
        (
            Method::POST,
            format!("/v1/ops/sessions/{session}/terminate"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/ops/participants/{session}/{user}/kick"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/ops/users/{user}/ban"),
            Some(json!({"hours": 1})),
        ),
        (Method::DELETE, format!("/v1/ops/users/{user}/ban"), None),
        (Method::GET, "/v1/ops/bans".into(), None),
        (Method::GET, "/v1/ops/reports".into(), None),
        (
            Method::POST,
            format!("/v1/ops/reports/{report}/resolve"),
            Some(json!({"action": "dismiss"})),
        ),
        (Method::GET, "/v1/ops/config".into(), None),
        (
            Method::PUT,
            "/v1/ops/config/live-sessions-disabled".into(),
            Some(json!({"value": true})),
        ),
        (Method::GET, "/v1/ops/usage".into(), None),
        (Method::GET, "/v1/ops/stats/daily?days=7".into(), None),
        (
            Method::GET,
            "/v1/ops/stats/top-creators?days=30".into(),
            None,
        ),
        (Method::GET, "/v1/ops/stats/problem-sessions".into(), None),
        (
            Method::GET,
            "/v1/ops/stats/recent-creators?minutes=5".into(),
            None,
        ),
    ]
}

/// Rows moderation writes: a refused request must leave them all as they were.
async fn written(stack: &Stack) -> i64 {
    stack
        .count(
            "SELECT (SELECT count(*) FROM live_session_bans) + (SELECT count(*) FROM creator_bans)
                  + (SELECT count(*) FROM live_reports) + (SELECT count(*) FROM outbox
                     WHERE headers->>'Ipelya-Event-Type' LIKE 'moderation.%')
                  + (SELECT count(*) FROM profiles WHERE banned_until IS NOT NULL)
                  + (SELECT count(*) FROM system_config WHERE value = 'true'::jsonb)
                  + (SELECT count(*) FROM live_reports WHERE status <> 'pending')",
            &[],
        )
        .await
}

async fn report_row(stack: &Stack, reporter: Uuid, reported: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    stack
        .sql()
        .await
        .execute(
            "INSERT INTO live_reports (id, reporter_id, reported_user_id, reason) VALUES ($1, $2, $3, 'spam')",
            &[&id, &reporter, &reported],
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn ops_routes_need_a_valid_token_and_an_operator_read_from_the_database() {
    let stack = support::stack().await;
    let host = stack.user("host", true, None).await;
    let viewer = stack.user("viewer", false, Some("user")).await;
    let session = stack.public_session(host).await;
    let report = report_row(&stack, viewer, host).await;
    let before = written(&stack).await;
    for (method, path, body) in ops_routes(session, viewer, report) {
        let url = format!("{}{path}", stack.moderation);
        // No token, a malformed one, one signed with another secret, one of nobody.
        for auth in [
            None,
            Some("Bearer nope".to_owned()),
            Some(format!(
                "Bearer {}",
                auth::mint(b"another-secret-another-secret-32b", viewer, 60)
            )),
            Some(format!("Bearer {}", testkit::token_for(Uuid::new_v4()))),
        ] {
            let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
            let (status, res) = stack
                .raw(
                    method.clone(),
                    url.clone(),
                    auth,
                    Some("application/json"),
                    bytes,
                )
                .await;
            assert_error(status, &res, 401, "UNAUTHORIZED");
        }
        // An ordinary user and a creator: 403.
        for who in [viewer, host] {
            let (status, res) = stack
                .call(method.clone(), url.clone(), who, body.clone())
                .await;
            assert_error(status, &res, 403, "FORBIDDEN");
        }
    }
    assert_eq!(written(&stack).await, before, "nothing changed");
    // An operator demoted in the database loses access at once.
    let ops = stack.operator().await;
    let (status, _) = stack.md(Method::GET, "/v1/ops/sessions", ops, None).await;
    assert_eq!(status, 200);
    stack
        .sql()
        .await
        .execute("UPDATE profiles SET role = 'user' WHERE id = $1", &[&ops])
        .await
        .unwrap();
    let (status, res) = stack.md(Method::GET, "/v1/ops/sessions", ops, None).await;
    assert_error(status, &res, 403, "FORBIDDEN");
    // admin is an operator too.
    let admin = stack.user("admin", false, Some("admin")).await;
    let (status, _) = stack.md(Method::GET, "/v1/ops/sessions", admin, None).await;
    assert_eq!(status, 200);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_host_cannot_moderate_another_creators_session() {
    let stack = support::stack().await;
    let host = stack.user("host", true, None).await;
    let other = stack.user("other", true, None).await;
    let viewer = stack.user("viewer", false, None).await;
    let session = stack.public_session(host).await;
    let message = Uuid::now_v7();
    stack
        .sql()
        .await
        .execute(
            "INSERT INTO live_messages (id, session_id, user_id, body) VALUES ($1, $2, $3, 'hi')",
            &[&message, &session, &viewer],
        )
        .await
        .unwrap();
    let before = written(&stack).await;
    for who in [other, viewer] {
        for (method, path, body) in [
            (
                Method::POST,
                format!("/v1/moderation/sessions/{session}/kick"),
                Some(json!({"userId": viewer})),
            ),
            (
                Method::POST,
                format!("/v1/moderation/sessions/{session}/bans"),
                Some(json!({"userId": viewer, "reason": "x"})),
            ),
            (
                Method::DELETE,
                format!("/v1/moderation/sessions/{session}/bans/{viewer}"),
                None,
            ),
            (
                Method::DELETE,
                format!("/v1/moderation/messages/{message}"),
                None,
            ),
        ] {
            let (status, res) = stack.md(method, &path, who, body).await;
            assert_error(status, &res, 403, "FORBIDDEN");
        }
    }
    // Creator bans are a creator's: a viewer has none.
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/moderation/creator-bans".to_owned(),
            Some(json!({"userId": other})),
        ),
        (Method::GET, "/v1/moderation/creator-bans".to_owned(), None),
        (
            Method::DELETE,
            format!("/v1/moderation/creator-bans/{other}"),
            None,
        ),
    ] {
        let (status, res) = stack.md(method, &path, viewer, body).await;
        assert_error(status, &res, 403, "FORBIDDEN");
    }
    assert_eq!(written(&stack).await, before);
    stack.shutdown().await;
}

#[tokio::test]
async fn bad_inputs_are_refused_and_nothing_is_stored() {
    let stack = support::stack().await;
    let host = stack.user("host", true, None).await;
    let viewer = stack.user("viewer", false, None).await;
    let ops = stack.operator().await;
    let session = stack.public_session(host).await;
    let report = report_row(&stack, viewer, host).await;
    let before = written(&stack).await;
    let long = "x".repeat(501);
    let unknown = Uuid::new_v4();
    let cases: Vec<(Uuid, Method, String, Value, u16, &str)> = vec![
        // session bans
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/bans"),
            json!({}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/bans"),
            json!({"userId": "nope"}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/bans"),
            json!([viewer]),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/bans"),
            json!({"userId": viewer, "reason": long}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/bans"),
            json!({"userId": viewer, "extra": 1}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/bans"),
            json!({"userId": host}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/bans"),
            json!({"userId": unknown}),
            404,
            "NOT_FOUND",
        ),
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{unknown}/bans"),
            json!({"userId": viewer}),
            404,
            "SESSION_NOT_FOUND",
        ),
        (
            host,
            Method::POST,
            "/v1/moderation/sessions/not-a-uuid/bans".into(),
            json!({"userId": viewer}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::DELETE,
            format!("/v1/moderation/sessions/{session}/bans/{viewer}"),
            Value::Null,
            404,
            "NOT_FOUND",
        ),
        // kick
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/kick"),
            json!({"userId": 5}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/kick"),
            json!({"userId": host}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/kick"),
            json!({"userId": viewer}),
            404,
            "NOT_FOUND",
        ),
        // creator bans
        (
            host,
            Method::POST,
            "/v1/moderation/creator-bans".into(),
            json!({"userId": host}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::POST,
            "/v1/moderation/creator-bans".into(),
            json!({"userId": unknown}),
            404,
            "NOT_FOUND",
        ),
        (
            host,
            Method::POST,
            "/v1/moderation/creator-bans".into(),
            json!({"user": viewer}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::DELETE,
            format!("/v1/moderation/creator-bans/{viewer}"),
            Value::Null,
            404,
            "NOT_FOUND",
        ),
        (
            host,
            Method::GET,
            "/v1/moderation/creator-bans?limit=0".into(),
            Value::Null,
            422,
            "VALIDATION_ERROR",
        ),
        (
            host,
            Method::GET,
            "/v1/moderation/creator-bans?cursor=garbage".into(),
            Value::Null,
            422,
            "VALIDATION_ERROR",
        ),
        // messages
        (
            host,
            Method::DELETE,
            format!("/v1/moderation/messages/{unknown}"),
            Value::Null,
            404,
            "NOT_FOUND",
        ),
        (
            host,
            Method::DELETE,
            "/v1/moderation/messages/123".into(),
            Value::Null,
            422,
            "VALIDATION_ERROR",
        ),
        // reports
        (
            viewer,
            Method::POST,
            "/v1/reports".into(),
            json!({"reportedUserId": host}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            viewer,
            Method::POST,
            "/v1/reports".into(),
            json!({"reportedUserId": host, "reason": ""}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            viewer,
            Method::POST,
            "/v1/reports".into(),
            json!({"reportedUserId": host, "reason": "x".repeat(201)}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            viewer,
            Method::POST,
            "/v1/reports".into(),
            json!({"reportedUserId": host, "reason": "spam", "details": "x".repeat(2001)}),
            422,
            "VALIDATION_ERROR",
        ),
        // The limits hold for the text as sent (the document's `maxLength`), blank excess
        // included.
        (
            host,
            Method::POST,
            format!("/v1/moderation/sessions/{session}/bans"),
            json!({"userId": viewer, "reason": format!("{} ", "x".repeat(500))}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            viewer,
            Method::POST,
            "/v1/reports".into(),
            json!({"reportedUserId": host, "reason": format!("{}  ", "x".repeat(199))}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            viewer,
            Method::POST,
            "/v1/reports".into(),
            json!({"reportedUserId": host, "reason": "spam", "details": format!(" {}", "x".repeat(2000))}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            viewer,
            Method::POST,
            "/v1/reports".into(),
            json!({"reportedUserId": viewer, "reason": "spam"}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            viewer,
            Method::POST,
            "/v1/reports".into(),
            json!({"reportedUserId": unknown, "reason": "spam"}),
            404,
            "NOT_FOUND",
        ),
        (
            viewer,
            Method::POST,
            "/v1/reports".into(),
            json!({"reportedUserId": host, "reason": "spam", "sessionId": unknown}),
            404,
            "SESSION_NOT_FOUND",
        ),
        // ops
        (
            ops,
            Method::GET,
            "/v1/ops/sessions?status=sleeping".into(),
            Value::Null,
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::GET,
            format!("/v1/ops/sessions/{unknown}"),
            Value::Null,
            404,
            "SESSION_NOT_FOUND",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/sessions/{unknown}/terminate"),
            Value::Null,
            404,
            "SESSION_NOT_FOUND",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/participants/{session}/{viewer}/kick"),
            Value::Null,
            404,
            "NOT_FOUND",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/users/{viewer}/ban"),
            json!({}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/users/{viewer}/ban"),
            json!({"hours": 0}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/users/{viewer}/ban"),
            json!({"hours": 1_000_000}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/users/{viewer}/ban"),
            json!({"hours": "1"}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/users/{unknown}/ban"),
            json!({"hours": 1}),
            404,
            "NOT_FOUND",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/users/{ops}/ban"),
            json!({"hours": 1}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::DELETE,
            format!("/v1/ops/users/{viewer}/ban"),
            Value::Null,
            404,
            "NOT_FOUND",
        ),
        (
            ops,
            Method::GET,
            "/v1/ops/reports?status=open".into(),
            Value::Null,
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/reports/{report}/resolve"),
            json!({"action": "delete"}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/reports/{report}/resolve"),
            json!({"action": "ban"}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/reports/{report}/resolve"),
            json!({"action": "warn", "hours": 2}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::POST,
            format!("/v1/ops/reports/{unknown}/resolve"),
            json!({"action": "dismiss"}),
            404,
            "NOT_FOUND",
        ),
        (
            ops,
            Method::PUT,
            "/v1/ops/config/live-sessions-disabled".into(),
            json!({"value": "yes"}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::PUT,
            "/v1/ops/config/live-sessions-disabled".into(),
            json!({}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::GET,
            "/v1/ops/stats/daily?days=0".into(),
            Value::Null,
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::GET,
            "/v1/ops/stats/daily?days=many".into(),
            Value::Null,
            422,
            "VALIDATION_ERROR",
        ),
        // `limit` is not one of daily's parameters (it was taken and ignored).
        (
            ops,
            Method::GET,
            "/v1/ops/stats/daily?limit=5".into(),
            Value::Null,
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::GET,
            "/v1/ops/stats/top-creators?days=366".into(),
            Value::Null,
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::GET,
            "/v1/ops/stats/recent-creators?minutes=0".into(),
            Value::Null,
            422,
            "VALIDATION_ERROR",
        ),
        (
            ops,
            Method::GET,
            "/v1/ops/stats/problem-sessions?x=1".into(),
            Value::Null,
            200,
            "",
        ),
    ];
    for (who, method, path, body, expected, code) in cases {
        let body = (!body.is_null()).then_some(body);
        let (status, res) = stack.md(method.clone(), &path, who, body).await;
        if expected == 200 {
            assert_eq!(status, 200, "{method} {path}: {res}");
        } else {
            assert_error(status, &res, expected, code);
        }
    }
    // Not JSON, and too large.
    let url = format!("{}/v1/reports", stack.moderation);
    let auth = Some(format!("Bearer {}", testkit::token_for(viewer)));
    let (status, res) = stack
        .raw(
            Method::POST,
            url.clone(),
            auth.clone(),
            Some("application/json"),
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_error(status, &res, 422, "VALIDATION_ERROR");
    let big = serde_json::to_vec(
        &json!({"reportedUserId": host, "reason": "x", "details": "y".repeat(70_000)}),
    )
    .unwrap();
    let (status, res) = stack
        .raw(Method::POST, url, auth, Some("application/json"), Some(big))
        .await;
    assert_error(status, &res, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(written(&stack).await, before, "nothing stored");
    stack.shutdown().await;
}

#[tokio::test]
async fn reports_go_through_the_queue_and_resolve_once() {
    let stack = support::stack().await;
    let host = stack.user("host", true, None).await;
    let viewer = stack.user("viewer", false, None).await;
    let ops = stack.operator().await;
    let session = stack.public_session(host).await;
    let (status, body) = stack
        .md(
            Method::POST,
            "/v1/reports",
            viewer,
            Some(json!({"reportedUserId": host, "sessionId": session, "reason": "nudity", "details": "at 10:02"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let r = &body["report"];
    assert_eq!(r["status"], "pending");
    assert_eq!(r["reporterId"], json!(viewer));
    assert_eq!(r["sessionId"], json!(session));
    let id = r["id"].as_str().unwrap().to_owned();
    let second = report_row(&stack, viewer, host).await;

    let (status, body) = stack
        .md(Method::GET, "/v1/ops/reports?limit=1", ops, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reports"][0]["id"], json!(id), "oldest first");
    let cursor = body["nextCursor"].as_str().unwrap().to_owned();
    let (_, body) = stack
        .md(
            Method::GET,
            &format!("/v1/ops/reports?limit=1&cursor={cursor}"),
            ops,
            None,
        )
        .await;
    assert_eq!(body["reports"][0]["id"], json!(second));
    assert_eq!(body["nextCursor"], Value::Null);

    let (status, body) = stack
        .md(
            Method::POST,
            &format!("/v1/ops/reports/{id}/resolve"),
            ops,
            Some(json!({"action": "ban", "hours": 48})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["status"], "banned");
    assert_eq!(body["report"]["resolvedBy"], json!(ops));
    let (status, body) = stack.try_token(host, session).await;
    assert_error(status, &body, 403, "BANNED");
    // Resolved already: 409.
    let (status, body) = stack
        .md(
            Method::POST,
            &format!("/v1/ops/reports/{id}/resolve"),
            ops,
            Some(json!({"action": "dismiss"})),
        )
        .await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    let (status, body) = stack
        .md(
            Method::POST,
            &format!("/v1/ops/reports/{second}/resolve"),
            ops,
            Some(json!({"action": "warn"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["status"], "warned");
    let (_, body) = stack
        .md(Method::GET, "/v1/ops/reports?status=banned", ops, None)
        .await;
    assert_eq!(body["reports"].as_array().unwrap().len(), 1);
    for event in [
        "moderation.reported",
        "moderation.report_resolved",
        "moderation.global_ban",
        "moderation.warn",
    ] {
        assert!(stack.outbox_events(event).await >= 1, "{event}");
    }
    let (_, body) = stack.md(Method::GET, "/v1/ops/bans", ops, None).await;
    assert_eq!(body["bans"]["global"][0]["userId"], json!(host));
    stack.shutdown().await;
}

#[tokio::test]
async fn the_kill_switch_stops_new_sessions_at_the_next_request() {
    let stack = support::stack().await;
    let host = stack.user("host", true, None).await;
    let ops = stack.operator().await;
    let (status, body) = stack
        .md(
            Method::PUT,
            "/v1/ops/config/live-sessions-disabled",
            ops,
            Some(json!({"value": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"]["liveSessionsDisabled"], json!(true));
    let (status, body) = stack
        .create_session(
            host,
            json!({"sessionType": "video_live", "title": "t", "accessType": "public"}),
        )
        .await;
    assert_error(status, &body, 503, "LIVE_DISABLED");
    let (_, body) = stack.md(Method::GET, "/v1/ops/config", ops, None).await;
    assert_eq!(body["config"]["liveSessionsDisabled"], json!(true));
    let (status, _) = stack
        .md(
            Method::PUT,
            "/v1/ops/config/live-sessions-disabled",
            ops,
            Some(json!({"value": false})),
        )
        .await;
    assert_eq!(status, 200);
    stack.public_session(host).await;
    assert_eq!(stack.outbox_events("moderation.kill_switch").await, 2);
    stack.shutdown().await;
}

#[tokio::test]
async fn operators_see_sessions_details_stats_and_creator_bans_list() {
    let stack = support::stack().await;
    let host = stack.user("host", true, None).await;
    let viewer = stack.user("viewer", false, None).await;
    let ops = stack.operator().await;
    let session = stack.live_session(host, "video_live").await;
    stack.join_session(viewer, session).await;
    let message = Uuid::now_v7();
    stack
        .sql()
        .await
        .execute(
            "INSERT INTO live_messages (id, session_id, user_id, body) VALUES ($1, $2, $3, 'rude')",
            &[&message, &session, &viewer],
        )
        .await
        .unwrap();

    let (status, body) = stack
        .md(Method::GET, "/v1/ops/sessions?status=live", ops, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let s = &body["sessions"][0];
    assert_eq!(s["id"], json!(session));
    assert_eq!(s["participantCount"], json!(2));
    assert_eq!(s["sessionType"], "video_live");
    assert!(s["creatorUsername"].as_str().unwrap().starts_with("host_"));
    assert!(s["durationSeconds"].is_i64());

    // The host deletes the message: session-manager marks it and tells the session.
    let (status, body) = stack
        .md(
            Method::DELETE,
            &format!("/v1/moderation/messages/{message}"),
            host,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["deleted"], json!(true));
    assert_eq!(body["message"]["deletedBy"], json!(host));
    assert_eq!(
        stack.count("SELECT count(*) FROM outbox WHERE headers->>'Ipelya-Event-Type' = 'session.message_deleted'", &[]).await,
        1
    );
    // Again: already deleted, 200, no second broadcast.
    let (status, _) = stack
        .md(
            Method::DELETE,
            &format!("/v1/moderation/messages/{message}"),
            ops,
            None,
        )
        .await;
    assert_eq!(status, 200);

    let (status, body) = stack
        .md(
            Method::GET,
            &format!("/v1/ops/sessions/{session}"),
            ops,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["participants"].as_array().unwrap().len(), 2);
    assert_eq!(body["stats"]["activeParticipants"], json!(2));
    assert_eq!(body["messages"][0]["deleted"], json!(true));
    assert_eq!(body["messages"][0]["body"], Value::Null);

    for path in [
        "/v1/ops/stats/daily?days=7",
        "/v1/ops/stats/top-creators?days=30",
        "/v1/ops/stats/problem-sessions",
        "/v1/ops/stats/recent-creators?minutes=5",
    ] {
        let (status, body) = stack.md(Method::GET, path, ops, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, body) = stack
        .md(Method::GET, "/v1/ops/stats/daily?days=7", ops, None)
        .await;
    let days = body["days"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert_eq!(days[6]["sessionsCreated"], json!(1));
    let (_, body) = stack
        .md(Method::GET, "/v1/ops/stats/top-creators", ops, None)
        .await;
    assert_eq!(body["creators"][0]["creatorId"], json!(host));
    let (_, body) = stack
        .md(Method::GET, "/v1/ops/stats/recent-creators", ops, None)
        .await;
    assert_eq!(body["creators"][0]["sessions"], json!(1));
    // A session with nobody in for over an hour is a problem.
    let (_, body) = stack
        .md(Method::GET, "/v1/ops/stats/problem-sessions", ops, None)
        .await;
    assert_eq!(body["sessions"], json!([]));
    let stale = stack.user("stale", true, None).await;
    let old = stack.public_session(stale).await;
    stack
        .sql()
        .await
        .execute(
            "UPDATE live_sessions SET created_at = now() - interval '2 hours' WHERE id = $1",
            &[&old],
        )
        .await
        .unwrap();
    let (_, body) = stack
        .md(Method::GET, "/v1/ops/stats/problem-sessions", ops, None)
        .await;
    assert_eq!(body["sessions"][0]["id"], json!(old));

    // Creator bans: list with a cursor, lift.
    let a = stack.user("a", false, None).await;
    let b = stack.user("b", false, None).await;
    for u in [a, b] {
        let (status, _) = stack
            .md(
                Method::POST,
                "/v1/moderation/creator-bans",
                host,
                Some(json!({"userId": u, "reason": "x"})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (_, body) = stack
        .md(
            Method::GET,
            "/v1/moderation/creator-bans?limit=1",
            host,
            None,
        )
        .await;
    assert_eq!(body["bans"].as_array().unwrap().len(), 1);
    let cursor = body["nextCursor"].as_str().unwrap().to_owned();
    let (_, body2) = stack
        .md(
            Method::GET,
            &format!("/v1/moderation/creator-bans?limit=1&cursor={cursor}"),
            host,
            None,
        )
        .await;
    assert_ne!(body["bans"][0]["userId"], body2["bans"][0]["userId"]);
    let (status, _) = stack
        .md(
            Method::DELETE,
            &format!("/v1/moderation/creator-bans/{a}"),
            host,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = stack
        .md(Method::GET, "/v1/moderation/creator-bans", host, None)
        .await;
    assert_eq!(body["bans"].as_array().unwrap().len(), 1);
    stack.shutdown().await;
}
