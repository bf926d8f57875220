//! Chat routes: posting and listing, every bad input and every forbidden actor, the rate
//! limit, `total_messages`, soft deletes and the `session.message_posted` event.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Stack, assert_error, stack};

/// A bad body case: what, content type, bytes, expected status and error code.
pub type BadBody = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

pub fn messages_url(stack: &Stack, session: impl std::fmt::Display) -> String {
    format!("{}/v1/sessions/{session}/messages", stack.sessions)
}

/// A user who joined the session's room through the sim: LiveKit reported them, so they are
/// a participant (an active `live_participants` row).
pub async fn joined_viewer(stack: &Stack, session: Uuid, name: &str) -> Uuid {
    let user = testkit::profile(&stack.db, name, false, None).await;
    stack.join(&stack.token(user, session).await).await;
    wait_active(stack, session, user, true).await;
    user
}

pub async fn wait_active(stack: &Stack, session: Uuid, user: Uuid, active: bool) {
    testkit::eventually(
        Duration::from_secs(20),
        "the participant's presence",
        || async {
            let n = stack
                .count(
                    "SELECT count(*) FROM live_participants \
                 WHERE session_id = $1 AND user_id = $2 AND is_active = $3",
                    &[&session, &user, &active],
                )
                .await;
            (n == 1).then_some(())
        },
    )
    .await;
}

/// The first event of `event_type` the outbox relay has published (waits for it).
pub async fn published_event(stack: &Stack, event_type: &str) -> bus::Incoming {
    let pattern = format!("%{event_type}");
    let (subject, payload): (String, Vec<u8>) = testkit::eventually(
        Duration::from_secs(20),
        &format!("{event_type} to be published"),
        || async {
            let row = stack
                .sql()
                .await
                .query_opt(
                    "SELECT subject, payload FROM outbox WHERE subject LIKE $1 \
                     AND published_at IS NOT NULL ORDER BY created_at, id LIMIT 1",
                    &[&pattern],
                )
                .await
                .unwrap()?;
            Some((row.get(0), row.get(1)))
        },
    )
    .await;
    bus::Incoming::decode(&subject, &payload, 1).unwrap()
}

pub async fn post(stack: &Stack, user: Uuid, session: Uuid, body: Value) -> (StatusCode, Value) {
    stack
        .call(Method::POST, messages_url(stack, session), user, Some(body))
        .await
}

async fn list(stack: &Stack, user: Uuid, session: Uuid, query: &str) -> (StatusCode, Value) {
    stack
        .call(
            Method::GET,
            format!("{}{query}", messages_url(stack, session)),
            user,
            None,
        )
        .await
}

async fn stored_messages(stack: &Stack) -> i64 {
    stack.count("SELECT count(*) FROM live_messages", &[]).await
}

async fn total_messages(stack: &Stack, session: Uuid) -> i64 {
    stack
        .count(
            "SELECT total_messages FROM live_sessions WHERE id = $1",
            &[&session],
        )
        .await
}

fn bodies(list: &Value) -> Vec<String> {
    list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn participants_post_and_read_the_chat_oldest_first() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let session = stack.live_session(host, "video_live").await;
    let viewer = joined_viewer(&stack, session, "viewer").await;

    let (status, body) = post(&stack, viewer, session, json!({"body": "  hello there  "})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], json!(true));
    let m = &body["message"];
    assert_eq!(m["sessionId"], json!(session.to_string()));
    assert_eq!(m["userId"], json!(viewer.to_string()));
    assert_eq!(
        m["body"],
        json!("hello there"),
        "surrounding whitespace trimmed"
    );
    assert!(m["createdAt"].as_str().unwrap().ends_with('Z'), "{m}");
    let first: Uuid = m["id"].as_str().unwrap().parse().unwrap();

    // The host is a participant too; 500 characters (not bytes) is the limit.
    let long = "é".repeat(500);
    let (status, body) = post(&stack, host, session, json!({"body": long})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(&stack, viewer, session, json!({"body": "line 1\nline 2"})).await;
    assert_eq!(status, 201, "{body}");

    let (status, all) = list(&stack, viewer, session, "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["success"], json!(true));
    assert_eq!(
        bodies(&all),
        ["hello there", long.as_str(), "line 1\nline 2"]
    );
    assert_eq!(all["nextCursor"], Value::Null);

    let (status, after) = list(&stack, host, session, &format!("?after={first}")).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(bodies(&after), [long.as_str(), "line 1\nline 2"]);

    // Paging after a message: limit, then the cursor continues.
    let (_, page) = list(&stack, host, session, &format!("?after={first}&limit=1")).await;
    assert_eq!(bodies(&page), [long.as_str()]);
    let next = page["nextCursor"].as_str().expect("a next page").to_owned();
    let (_, page) = list(&stack, host, session, &format!("?after={next}&limit=1")).await;
    assert_eq!(bodies(&page), ["line 1\nline 2"]);
    assert_eq!(page["nextCursor"], Value::Null);

    // Without `after`, the newest `limit`, still oldest first.
    let (_, recent) = list(&stack, host, session, "?limit=2").await;
    assert_eq!(bodies(&recent), [long.as_str(), "line 1\nline 2"]);

    assert_eq!(total_messages(&stack, session).await, 3);
    assert_eq!(
        stack.session(host, session).await["totalMessages"],
        json!(3)
    );
}

#[tokio::test]
async fn soft_deleted_messages_never_come_back() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let session = stack.live_session(host, "audio_room").await;
    let viewer = joined_viewer(&stack, session, "viewer").await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let (status, body) = post(&stack, viewer, session, json!({ "body": text })).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["message"]["id"].as_str().unwrap().to_owned());
    }
    let two: Uuid = ids[1].parse().unwrap();
    stack
        .sql()
        .await
        .execute(
            "UPDATE live_messages SET deleted_at = now(), deleted_by = $2 WHERE id = $1",
            &[&two, &host],
        )
        .await
        .unwrap();
    let (_, all) = list(&stack, viewer, session, "").await;
    assert_eq!(bodies(&all), ["one", "three"]);
    let (_, after) = list(&stack, viewer, session, &format!("?after={}", ids[0])).await;
    assert_eq!(bodies(&after), ["three"]);
    // A deleted message still works as a position.
    let (_, after) = list(&stack, viewer, session, &format!("?after={two}")).await;
    assert_eq!(bodies(&after), ["three"]);
    let (_, page) = list(
        &stack,
        viewer,
        session,
        &format!("?after={}&limit=1", ids[0]),
    )
    .await;
    assert_eq!(bodies(&page), ["three"]);
}

#[tokio::test]
async fn a_post_is_published_as_message_posted() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let session = stack.live_session(host, "video_live").await;
    let viewer = joined_viewer(&stack, session, "viewer").await;
    let (status, body) = post(&stack, viewer, session, json!({"body": "hi all"})).await;
    assert_eq!(status, 201, "{body}");
    let id = body["message"]["id"].as_str().unwrap().to_owned();
    // Written in the message's transaction, then published by the relay.
    let ev = published_event(&stack, "session.message_posted").await;
    assert_eq!(ev.event_type, "session.message_posted");
    assert_eq!(ev.aggregate_id, session.to_string());
    let m: bus::proto::MessagePosted = ev.payload().unwrap();
    assert_eq!(
        m,
        bus::proto::MessagePosted {
            session_id: session.to_string(),
            message_id: id,
            user_id: viewer.to_string(),
            body: "hi all".into(),
            deleted: false,
        }
    );
}

#[tokio::test]
async fn bad_bodies_are_refused_and_nothing_is_stored() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let session = stack.live_session(host, "video_live").await;
    let url = messages_url(&stack, session);
    let auth = Some(format!("Bearer {}", testkit::token_for(host)));
    let cases: Vec<BadBody> = vec![
        (
            "not JSON",
            Some("application/json"),
            b"{".to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "no content type",
            None,
            br#"{"body":"x"}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "an array",
            Some("application/json"),
            br#"["x"]"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "no body field",
            Some("application/json"),
            b"{}".to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "a number",
            Some("application/json"),
            br#"{"body":5}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "null",
            Some("application/json"),
            br#"{"body":null}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "empty",
            Some("application/json"),
            br#"{"body":""}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "blank",
            Some("application/json"),
            br#"{"body":" \n "}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "unknown field",
            Some("application/json"),
            br#"{"body":"x","color":"red"}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "501 characters",
            Some("application/json"),
            serde_json::to_vec(&json!({"body": "a".repeat(501)})).unwrap(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "over 64 KiB",
            Some("application/json"),
            serde_json::to_vec(&json!({"body": "a".repeat(70_000)})).unwrap(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (what, ct, body, code, error) in cases {
        let (status, answer) = stack
            .raw(Method::POST, url.clone(), auth.clone(), ct, Some(body))
            .await;
        assert_eq!(status.as_u16(), code, "{what}: {answer}");
        assert_error(status, &answer, code, error);
    }
    // Bad auth.
    for authorization in [None, Some("Bearer nope".to_owned())] {
        let (status, answer) = stack
            .raw(
                Method::POST,
                url.clone(),
                authorization,
                Some("application/json"),
                Some(br#"{"body":"x"}"#.to_vec()),
            )
            .await;
        assert_error(status, &answer, 401, "UNAUTHORIZED");
    }
    // A valid token naming no profile.
    let (status, answer) = post(&stack, Uuid::new_v4(), session, json!({"body": "x"})).await;
    assert_error(status, &answer, 401, "UNAUTHORIZED");
    // Bad path and query.
    let (status, answer) = stack
        .call(
            Method::POST,
            format!("{}/v1/sessions/not-a-uuid/messages", stack.sessions),
            host,
            Some(json!({"body": "x"})),
        )
        .await;
    assert_error(status, &answer, 422, "VALIDATION_ERROR");
    for query in [
        "?after=nope",
        "?limit=0",
        "?limit=101",
        "?limit=x",
        "?color=red",
    ] {
        let (status, answer) = list(&stack, host, session, query).await;
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
    }
    assert_eq!(stored_messages(&stack).await, 0);
    assert_eq!(total_messages(&stack, session).await, 0);
}

/// Found by schemathesis: PostgreSQL's text cannot hold U+0000, and the insert failed as a
/// 500.
#[tokio::test]
async fn a_body_with_a_nul_character_is_422_and_stores_nothing() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let session = stack.public_session(host).await;
    for body in ["x\u{0}y", "\u{0}", " hi \u{0}"] {
        let (status, answer) = post(&stack, host, session, json!({ "body": body })).await;
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
        assert!(
            answer["error"].as_str().unwrap().contains("NUL"),
            "{answer}"
        );
    }
    assert_eq!(stored_messages(&stack).await, 0);
    assert_eq!(total_messages(&stack, session).await, 0);
    let (status, _) = post(&stack, host, session, json!({ "body": "x y" })).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn strangers_banned_users_and_ended_sessions_cannot_post() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let session = stack.live_session(host, "video_live").await;
    // Unknown session: 404 for posting and listing.
    let (status, answer) = post(&stack, host, Uuid::new_v4(), json!({"body": "x"})).await;
    assert_error(status, &answer, 404, "SESSION_NOT_FOUND");
    let (status, answer) = list(&stack, host, Uuid::new_v4(), "").await;
    assert_error(status, &answer, 404, "SESSION_NOT_FOUND");

    // A user who never joined.
    let stranger = testkit::profile(&stack.db, "stranger", false, None).await;
    let (status, answer) = post(&stack, stranger, session, json!({"body": "x"})).await;
    assert_error(status, &answer, 403, "FORBIDDEN");
    let (status, answer) = list(&stack, stranger, session, "").await;
    assert_error(status, &answer, 403, "FORBIDDEN");

    // A viewer who left the room is no participant any more.
    let left = joined_viewer(&stack, session, "left").await;
    let room = stack.session(host, session).await["roomName"]
        .as_str()
        .unwrap()
        .to_owned();
    stack.sim("leave", &room, left).await;
    wait_active(&stack, session, left, false).await;
    let (status, answer) = post(&stack, left, session, json!({"body": "x"})).await;
    assert_error(status, &answer, 403, "FORBIDDEN");

    // A session-banned viewer still in the room: BANNED.
    let banned = joined_viewer(&stack, session, "banned").await;
    stack
        .sql()
        .await
        .execute(
            "INSERT INTO live_session_bans (session_id, user_id, banned_by) VALUES ($1, $2, $3)",
            &[&session, &banned, &host],
        )
        .await
        .unwrap();
    let (status, answer) = post(&stack, banned, session, json!({"body": "x"})).await;
    assert_error(status, &answer, 403, "BANNED");
    // Banned by the creator, or globally: BANNED as well.
    let creator_banned = joined_viewer(&stack, session, "creator_banned").await;
    let globally_banned = joined_viewer(&stack, session, "globally_banned").await;
    let sql = stack.sql().await;
    sql.execute(
        "INSERT INTO creator_bans (creator_id, user_id) VALUES ($1, $2)",
        &[&host, &creator_banned],
    )
    .await
    .unwrap();
    sql.execute(
        "UPDATE profiles SET banned_until = now() + interval '1 hour' WHERE id = $1",
        &[&globally_banned],
    )
    .await
    .unwrap();
    for user in [creator_banned, globally_banned] {
        let (status, answer) = post(&stack, user, session, json!({"body": "x"})).await;
        assert_error(status, &answer, 403, "BANNED");
    }
    assert_eq!(stored_messages(&stack).await, 0);

    // Ended: the host (still its participant) cannot post any more; reading stays open.
    let (status, body) = post(&stack, host, session, json!({"body": "bye"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = stack
        .call(
            Method::POST,
            format!("{}/v1/sessions/{session}/end", stack.sessions),
            host,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, answer) = post(&stack, host, session, json!({"body": "x"})).await;
    assert_error(status, &answer, 409, "INVALID_TRANSITION");
    let (status, all) = list(&stack, host, session, "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(bodies(&all), ["bye"]);
    assert_eq!(stored_messages(&stack).await, 1);
    assert_eq!(total_messages(&stack, session).await, 1);
}

#[tokio::test]
async fn the_rate_limit_is_a_bucket_per_user_per_session() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let session = stack.live_session(host, "video_live").await;
    let viewer = joined_viewer(&stack, session, "viewer").await;
    // CHAT_RATE_PER_MIN = 20 in the test stack: a burst of 20, then 429.
    for i in 0..20 {
        let (status, body) = post(&stack, viewer, session, json!({"body": format!("m{i}")})).await;
        assert_eq!(status, 201, "message {i}: {body}");
    }
    let res = stack
        .http
        .post(messages_url(&stack, session))
        .bearer_auth(testkit::token_for(viewer))
        .json(&json!({"body": "one too many"}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=3).contains(&retry_after),
        "one token per 3 s: {retry_after}"
    );
    let answer: Value = res.json().await.unwrap();
    assert_error(status, &answer, 429, "RATE_LIMITED");
    assert_eq!(stored_messages(&stack).await, 20);
    assert_eq!(total_messages(&stack, session).await, 20);

    // Another user of the same session has a bucket of their own.
    let (status, body) = post(&stack, host, session, json!({"body": "host"})).await;
    assert_eq!(status, 201, "{body}");
    // Reading is not limited.
    let (status, _) = list(&stack, viewer, session, "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn concurrent_posts_are_all_counted_and_listed_in_order() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let session = stack.live_session(host, "video_live").await;
    let mut viewers = Vec::new();
    for i in 0..4 {
        viewers.push(joined_viewer(&stack, session, &format!("v{i}")).await);
    }
    let mut posts = Vec::new();
    for (i, user) in viewers.iter().copied().chain([host]).enumerate() {
        for j in 0..10 {
            let stack = &stack;
            posts.push(async move {
                post(stack, user, session, json!({"body": format!("{i}-{j}")})).await
            });
        }
    }
    let answers = futures_util::future::join_all(posts).await;
    assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
    assert_eq!(total_messages(&stack, session).await, 50);
    // Paging by `after` walks every message once, in id order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(a) => format!("?limit=7&after={a}"),
            None => "?limit=7&after=00000000-0000-0000-0000-000000000000".to_owned(),
        };
        let (status, page) = list(&stack, host, session, &query).await;
        assert_eq!(status, 200, "{page}");
        for m in page["messages"].as_array().unwrap() {
            seen.push(m["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 50);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "ascending, no repeats");
}
