//! Every session route of API.md and every bad input: status, error envelope, and nothing
//! stored after a refusal.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Stack, assert_error, stack};

fn public_body() -> Value {
    json!({"sessionType": "video_live", "title": "Live now", "accessType": "public"})
}

async fn sessions_stored(stack: &Stack) -> i64 {
    stack.count("SELECT count(*) FROM live_sessions", &[]).await
}

/// The fields of API.md's session resource.
const SESSION_FIELDS: [&str; 18] = [
    "id",
    "creatorId",
    "title",
    "sessionType",
    "accessType",
    "priceCoins",
    "status",
    "roomName",
    "createdAt",
    "startedAt",
    "endedAt",
    "endReason",
    "hostLeftAt",
    "viewerCount",
    "peakViewers",
    "totalDurationSeconds",
    "totalMessages",
    "totalGiftsReceived",
];

#[track_caller]
fn assert_session_resource(s: &Value) {
    let o = s
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {s}"));
    for f in SESSION_FIELDS {
        assert!(o.contains_key(f), "field {f} missing: {s}");
    }
    for k in o.keys() {
        assert!(
            !k.contains('_') && k.chars().next().is_some_and(|c| c.is_ascii_lowercase()),
            "field {k} is not camelCase: {s}"
        );
    }
    let created: DateTime<Utc> = s["createdAt"]
        .as_str()
        .unwrap()
        .parse()
        .expect("createdAt is RFC 3339");
    assert!((Utc::now() - created).num_seconds().abs() < 60, "{s}");
}

fn session_url(stack: &Stack, id: impl std::fmt::Display, action: &str) -> String {
    if action.is_empty() {
        format!("{}/v1/sessions/{id}", stack.sessions)
    } else {
        format!("{}/v1/sessions/{id}/{action}", stack.sessions)
    }
}

async fn post_action(
    stack: &Stack,
    user: Uuid,
    id: impl std::fmt::Display,
    action: &str,
) -> (reqwest::StatusCode, Value) {
    stack
        .call(Method::POST, session_url(stack, id, action), user, None)
        .await
}

// ---------------------------------------------------------------- create

#[tokio::test]
async fn create_answers_201_with_the_session_resource() {
    let stack = stack().await;
    let video = testkit::profile(&stack.db, "video", true, None).await;
    let audio = testkit::profile(&stack.db, "audio", true, None).await;
    let ppv = testkit::profile(&stack.db, "ppv", true, None).await;

    let (status, body) = stack
        .create_session(
            video,
            json!({"sessionType": "video_live", "title": "  Hello there  ", "accessType": "public"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], json!(true), "{body}");
    let s = &body["session"];
    assert_session_resource(s);
    let id: Uuid = s["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(s["creatorId"], json!(video.to_string()));
    assert_eq!(s["title"], json!("Hello there"), "the title is trimmed");
    assert_eq!(s["sessionType"], json!("video_live"));
    assert_eq!(s["accessType"], json!("public"));
    assert_eq!(s["priceCoins"], Value::Null);
    assert_eq!(s["status"], json!("created"));
    assert_eq!(s["roomName"], json!(format!("live_video_{id}")));
    for f in ["startedAt", "endedAt", "endReason", "hostLeftAt"] {
        assert_eq!(s[f], Value::Null, "{f}: {s}");
    }
    for f in [
        "viewerCount",
        "peakViewers",
        "totalDurationSeconds",
        "totalMessages",
        "totalGiftsReceived",
    ] {
        assert_eq!(s[f], json!(0), "{f}: {s}");
    }
    // GET answers the same resource.
    let got = stack.session(video, id).await;
    assert_eq!(&got, s);
    // The room exists in LiveKit, created explicitly.
    assert!(
        stack
            .sim_rooms()
            .await
            .to_string()
            .contains(&format!("live_video_{id}"))
    );

    let (status, body) = stack
        .create_session(
            audio,
            json!({"sessionType": "audio_room", "title": "x".repeat(120), "accessType": "subscribers_only", "maxGuests": 10}),
        )
        .await;
    assert_eq!(status, 201, "a 120-character title is fine: {body}");
    let s = &body["session"];
    assert_session_resource(s);
    assert_eq!(s["sessionType"], json!("audio_room"));
    assert_eq!(s["accessType"], json!("subscribers_only"));
    assert_eq!(
        s["roomName"],
        json!(format!("audio_room_{}", s["id"].as_str().unwrap()))
    );

    let (status, body) = stack
        .create_session(
            ppv,
            json!({"sessionType": "video_live", "title": "Paid", "accessType": "pay_per_view", "priceCoins": 100000, "maxGuests": 0}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["session"]["priceCoins"], json!(100000));
    assert_eq!(body["session"]["accessType"], json!("pay_per_view"));
    assert_eq!(sessions_stored(&stack).await, 3);

    // The lowest price is 1 coin.
    let cheap = testkit::profile(&stack.db, "cheap", true, None).await;
    let (status, body) = stack
        .create_session(
            cheap,
            json!({"sessionType": "audio_room", "title": "Cheap", "accessType": "pay_per_view", "priceCoins": 1}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["session"]["priceCoins"], json!(1));
}

#[tokio::test]
async fn create_is_for_creators_only() {
    let stack = stack().await;
    let fan = testkit::profile(&stack.db, "fan", false, None).await;
    let (status, body) = stack.create_session(fan, public_body()).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    assert_eq!(sessions_stored(&stack).await, 0);
}

#[tokio::test]
async fn a_second_session_of_the_same_creator_is_a_conflict_until_the_first_ends() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let first = stack.public_session(creator).await;
    let (status, body) = stack.create_session(creator, public_body()).await;
    assert_error(status, &body, 409, "CONFLICT");
    assert_eq!(sessions_stored(&stack).await, 1);

    // Live, the same.
    stack.join(&stack.token(creator, first).await).await;
    stack
        .wait_session(creator, first, "live", |s| s["status"] == json!("live"))
        .await;
    let (status, body) = stack
        .create_session(
            creator,
            json!({"sessionType": "audio_room", "title": "Another", "accessType": "public"}),
        )
        .await;
    assert_error(status, &body, 409, "CONFLICT");
    assert_eq!(sessions_stored(&stack).await, 1);

    // Once it ended, the creator may go live again.
    let (status, body) = post_action(&stack, creator, first, "end").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = stack.create_session(creator, public_body()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(sessions_stored(&stack).await, 2);
}

#[tokio::test]
async fn concurrent_creates_of_one_creator_make_exactly_one_session() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    // LiveKit answers CreateRoom slowly: every request passes the "already has one" check
    // before any of them inserts, so the database's guarantee is what is tested.
    stack.faults(json!({"apiDelayMs": 300})).await;
    let answers = futures_util::future::join_all(
        (0..5).map(|_| stack.create_session(creator, public_body())),
    )
    .await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_error(*status, body, 409, "CONFLICT");
    }
    assert_eq!(sessions_stored(&stack).await, 1);
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM live_sessions WHERE creator_id = $1 AND status = 'created'",
                &[&creator]
            )
            .await,
        1
    );
}

/// Found by schemathesis: PostgreSQL's text cannot hold U+0000, and the insert failed as a
/// 500 (after the LiveKit room had been created for nothing).
#[tokio::test]
async fn a_title_with_a_nul_character_is_422_and_creates_no_room() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    for title in ["a\u{0}b", "\u{0}", " live \u{0} "] {
        let mut body = public_body();
        body["title"] = json!(title);
        let (status, answer) = stack.create_session(creator, body).await;
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
        assert!(
            answer["error"].as_str().unwrap().contains("NUL"),
            "{answer}"
        );
    }
    assert_eq!(sessions_stored(&stack).await, 0);
    let rooms = stack.sim_rooms().await;
    assert!(!rooms.to_string().contains("live_video_"), "{rooms}");
    // The same creator's next, clean create goes through.
    stack.public_session(creator).await;
}

#[tokio::test]
async fn a_refused_concurrent_create_leaves_no_room_in_livekit() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    stack.faults(json!({"apiDelayMs": 300})).await;
    let answers = futures_util::future::join_all(
        (0..3).map(|_| stack.create_session(creator, public_body())),
    )
    .await;
    assert_eq!(answers.iter().filter(|(s, _)| *s == 201).count(), 1);
    stack.faults(json!({"apiDelayMs": 0})).await;
    let rooms = stack.sim_rooms().await;
    let n = rooms.to_string().matches("live_video_").count();
    let (_, body) = answers.iter().find(|(s, _)| *s == 201).unwrap();
    let room = body["session"]["roomName"].as_str().unwrap();
    assert!(rooms.to_string().contains(room), "{rooms}");
    assert_eq!(n, 1, "only the created session's room: {rooms}");
}

#[tokio::test]
async fn the_kill_switch_refuses_new_sessions_from_the_next_request() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let set = |on: bool| {
        let db = &stack.db;
        async move {
            db.sql()
                .await
                .execute(
                    "UPDATE system_config SET value = $1 WHERE key = 'live_sessions_disabled'",
                    &[&json!(on)],
                )
                .await
                .unwrap();
        }
    };
    set(true).await;
    let (status, body) = stack.create_session(creator, public_body()).await;
    assert_error(status, &body, 503, "LIVE_DISABLED");
    assert_eq!(sessions_stored(&stack).await, 0);
    assert!(
        !stack.sim_rooms().await.to_string().contains("live_video_"),
        "no LiveKit room either"
    );
    set(false).await;
    let (status, body) = stack.create_session(creator, public_body()).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn bad_create_bodies_are_422_and_store_nothing() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let url = format!("{}/v1/sessions", stack.sessions);
    let auth = Some(format!("Bearer {}", testkit::token_for(creator)));
    let json_ct = Some("application/json");

    let raw: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        (
            "malformed JSON",
            json_ct,
            br#"{"sessionType": "video_live", "title": "x","#.to_vec(),
        ),
        ("not JSON at all", json_ct, b"hello".to_vec()),
        ("empty body", json_ct, Vec::new()),
        ("a string", json_ct, br#""video_live""#.to_vec()),
        ("null", json_ct, b"null".to_vec()),
        (
            "not declared as JSON",
            Some("text/plain"),
            serde_json::to_vec(&public_body()).unwrap(),
        ),
    ];
    for (what, ct, body) in raw {
        let (status, answer) = stack
            .raw(Method::POST, url.clone(), auth.clone(), ct, Some(body))
            .await;
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
        assert_eq!(sessions_stored(&stack).await, 0, "{what}");
    }

    let with = |patch: Value| {
        let mut b = public_body();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    };
    let cases: Vec<(&str, Value)> = vec![
        (
            "unknown sessionType",
            with(json!({"sessionType": "video_call"})),
        ),
        (
            "sessionType of another case",
            with(json!({"sessionType": "VIDEO_LIVE"})),
        ),
        ("unknown accessType", with(json!({"accessType": "free"}))),
        ("empty title", with(json!({"title": ""}))),
        ("blank title", with(json!({"title": "   \t "}))),
        (
            "121-character title",
            with(json!({"title": "x".repeat(121)})),
        ),
        (
            "121 characters of emoji",
            with(json!({"title": "\u{1F3A5}".repeat(121)})),
        ),
        ("title of another type", with(json!({"title": 5}))),
        ("missing title", with(json!({"title": null}))),
        ("missing sessionType", with(json!({"sessionType": null}))),
        ("missing accessType", with(json!({"accessType": null}))),
        (
            "pay_per_view without priceCoins",
            with(json!({"accessType": "pay_per_view"})),
        ),
        (
            "priceCoins 0",
            with(json!({"accessType": "pay_per_view", "priceCoins": 0})),
        ),
        (
            "priceCoins 100001",
            with(json!({"accessType": "pay_per_view", "priceCoins": 100_001})),
        ),
        (
            "negative priceCoins",
            with(json!({"accessType": "pay_per_view", "priceCoins": -5})),
        ),
        (
            "priceCoins as a string",
            with(json!({"accessType": "pay_per_view", "priceCoins": "100"})),
        ),
        (
            "fractional priceCoins",
            with(json!({"accessType": "pay_per_view", "priceCoins": 1.5})),
        ),
        (
            "priceCoins on a public session",
            with(json!({"priceCoins": 10})),
        ),
        (
            "priceCoins on a subscribers_only session",
            with(json!({"accessType": "subscribers_only", "priceCoins": 10})),
        ),
        ("unknown field", with(json!({"foo": 1}))),
        (
            "snake_case field",
            with(json!({"session_type": "video_live"})),
        ),
        ("maxGuests -1", with(json!({"maxGuests": -1}))),
        (
            "maxGuests over the video limit",
            with(json!({"maxGuests": 4})),
        ),
        (
            "maxGuests over the audio limit",
            with(json!({"sessionType": "audio_room", "maxGuests": 11})),
        ),
        (
            "maxGuests huge",
            with(json!({"maxGuests": 1_000_000_000_000i64})),
        ),
    ];
    for (what, body) in cases {
        let (status, answer) = stack.create_session(creator, body.clone()).await;
        assert_eq!(status, 422, "{what}: {body} → {answer}");
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
        assert_eq!(sessions_stored(&stack).await, 0, "{what}");
    }
    assert!(
        !stack.sim_rooms().await.to_string().contains("live_video_"),
        "no LiveKit room was created for a refused body"
    );
    // The creator is not locked out by any of it.
    let (status, body) = stack.create_session(creator, public_body()).await;
    assert_eq!(status, 201, "{body}");
}

/// A JSON array where the object is expected is a wrong type: serde reads a derived struct
/// from a sequence too (fields by position), so the route must refuse it itself.
#[tokio::test]
async fn an_array_body_is_422_and_stores_nothing() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let (status, answer) = stack
        .raw(
            Method::POST,
            format!("{}/v1/sessions", stack.sessions),
            Some(format!("Bearer {}", testkit::token_for(creator))),
            Some("application/json"),
            Some(br#"["video_live", "x", "public"]"#.to_vec()),
        )
        .await;
    assert_error(status, &answer, 422, "VALIDATION_ERROR");
    assert_eq!(sessions_stored(&stack).await, 0);
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let mut body = public_body();
    body["title"] = json!("x".repeat(70 * 1024));
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!(bytes.len() > 64 * 1024);
    let (status, answer) = stack
        .raw(
            Method::POST,
            format!("{}/v1/sessions", stack.sessions),
            Some(format!("Bearer {}", testkit::token_for(creator))),
            Some("application/json"),
            Some(bytes),
        )
        .await;
    assert_error(status, &answer, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(sessions_stored(&stack).await, 0);
}

fn jwt(claims: Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[tokio::test]
async fn missing_bad_and_profileless_tokens_are_401_on_every_route() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let id = stack.public_session(creator).await;
    let secret = testkit::JWT_SECRET.as_bytes();
    let now = Utc::now().timestamp();
    let bad: Vec<(&str, Option<String>)> = vec![
        ("no Authorization", None),
        ("no Bearer scheme", Some(testkit::token_for(creator))),
        ("Basic", Some("Basic dXNlcjpwYXNz".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "another secret",
            Some(format!(
                "Bearer {}",
                auth::mint(b"another-secret-with-enough-bytes-32!", creator, 3600)
            )),
        ),
        (
            "expired",
            Some(format!("Bearer {}", auth::mint(secret, creator, -3600))),
        ),
        (
            "sub not a UUID",
            Some(format!(
                "Bearer {}",
                jwt(
                    json!({"sub": "not-a-uuid", "aud": "authenticated", "exp": now + 3600}),
                    secret
                )
            )),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                jwt(
                    json!({"sub": creator, "aud": "anon", "exp": now + 3600}),
                    secret
                )
            )),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                jwt(json!({"sub": creator, "aud": "authenticated"}), secret)
            )),
        ),
        (
            "a valid token naming no profile",
            Some(format!("Bearer {}", testkit::token_for(Uuid::new_v4()))),
        ),
    ];
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            format!("{}/v1/sessions", stack.sessions),
            Some(public_body()),
        ),
        (Method::GET, format!("{}/v1/sessions", stack.sessions), None),
        (Method::GET, session_url(&stack, id, ""), None),
        (Method::POST, session_url(&stack, id, "leave"), None),
        (Method::POST, session_url(&stack, id, "end"), None),
        (Method::POST, session_url(&stack, id, "pause"), None),
        (Method::POST, session_url(&stack, id, "resume"), None),
    ];
    for (what, authorization) in &bad {
        for (method, url, body) in &routes {
            let (status, answer) = stack
                .raw(
                    method.clone(),
                    url.clone(),
                    authorization.clone(),
                    body.as_ref().map(|_| "application/json"),
                    body.as_ref().map(|b| serde_json::to_vec(b).unwrap()),
                )
                .await;
            assert_eq!(status, 401, "{what}: {method} {url} → {answer}");
            assert_error(status, &answer, 401, "UNAUTHORIZED");
        }
    }
    // Nothing changed: still the one session, still created.
    assert_eq!(sessions_stored(&stack).await, 1);
    assert_eq!(stack.session(creator, id).await["status"], json!("created"));
}

// ---------------------------------------------------------------- get

#[tokio::test]
async fn get_answers_the_session_404_for_an_unknown_id_and_422_for_a_non_uuid() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let fan = testkit::profile(&stack.db, "fan", false, None).await;
    let id = stack.public_session(creator).await;
    let (status, body) = stack
        .call(Method::GET, session_url(&stack, id, ""), fan, None)
        .await;
    assert_eq!(status, 200, "any user may read a session: {body}");
    assert_eq!(body["success"], json!(true));
    assert_session_resource(&body["session"]);
    assert_eq!(body["session"]["id"], json!(id.to_string()));

    let (status, body) = stack
        .call(
            Method::GET,
            session_url(&stack, Uuid::new_v4(), ""),
            fan,
            None,
        )
        .await;
    assert_error(status, &body, 404, "SESSION_NOT_FOUND");
    for bad in ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"] {
        let (status, body) = stack
            .call(Method::GET, session_url(&stack, bad, ""), fan, None)
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
}

// ---------------------------------------------------------------- list

async fn list(stack: &Stack, user: Uuid, query: &str) -> (reqwest::StatusCode, Value) {
    stack
        .call(
            Method::GET,
            format!("{}/v1/sessions{query}", stack.sessions),
            user,
            None,
        )
        .await
}

fn ids(body: &Value) -> Vec<String> {
    body["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array: {body}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Follows `nextCursor` to the end; returns every page.
async fn all_pages(stack: &Stack, user: Uuid, query: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let (status, body) = list(stack, user, &q).await;
        assert_eq!(status, 200, "{q}: {body}");
        assert!(pages.len() < 50, "pagination does not end");
        cursor = body["nextCursor"].as_str().map(str::to_owned);
        pages.push(body);
        if cursor.is_none() {
            return pages;
        }
    }
}

#[tokio::test]
async fn list_shows_live_sessions_newest_first_filters_and_pages_through_each_once() {
    let stack = stack().await;
    let fan = testkit::profile(&stack.db, "fan", false, None).await;
    let mut live = Vec::new();
    // One after the other, so creation times differ.
    for i in 0..8 {
        let creator = testkit::profile(&stack.db, &format!("creator{i}"), true, None).await;
        let kind = if i % 3 == 1 {
            "audio_room"
        } else {
            "video_live"
        };
        let (status, body) = stack
            .create_session(
                creator,
                json!({"sessionType": kind, "title": format!("Session {i}"), "accessType": "public"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        live.push((
            creator,
            body["session"]["id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
            kind,
        ));
    }
    let waiting = testkit::profile(&stack.db, "waiting", true, None).await;
    let created_only = stack.public_session(waiting).await;
    let gone = testkit::profile(&stack.db, "gone", true, None).await;
    let ended = stack.public_session(gone).await;
    assert_eq!(post_action(&stack, gone, ended, "end").await.0, 200);
    // The hosts join: the sessions go live.
    let st = &stack;
    futures_util::future::join_all(live.iter().map(|(c, id, _)| async move {
        let stack = st;
        stack.join(&stack.token(*c, *id).await).await;
        stack
            .wait_session(*c, *id, "live", |s| s["status"] == json!("live"))
            .await;
    }))
    .await;
    let newest_first: Vec<String> = live.iter().rev().map(|(_, id, _)| id.to_string()).collect();

    // Default: only live sessions, newest first, with their viewer count.
    let (status, body) = list(&stack, fan, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], json!(true));
    assert_eq!(ids(&body), newest_first, "{body}");
    assert_eq!(body["nextCursor"], Value::Null);
    for s in body["sessions"].as_array().unwrap() {
        assert_session_resource(s);
        assert_eq!(s["status"], json!("live"));
        assert_eq!(s["viewerCount"], json!(0));
    }
    let times: Vec<DateTime<Utc>> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["createdAt"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // type= filter.
    for kind in ["audio_room", "video_live"] {
        let (status, body) = list(&stack, fan, &format!("?type={kind}")).await;
        assert_eq!(status, 200, "{body}");
        let expected: Vec<String> = live
            .iter()
            .rev()
            .filter(|(_, _, k)| *k == kind)
            .map(|(_, id, _)| id.to_string())
            .collect();
        assert_eq!(ids(&body), expected, "{kind}");
    }
    // status= (explicit live, created, ended).
    let (_, body) = list(&stack, fan, "?status=live").await;
    assert_eq!(ids(&body), newest_first);
    let (_, body) = list(&stack, fan, "?status=created").await;
    assert_eq!(ids(&body), vec![created_only.to_string()]);
    let (_, body) = list(&stack, fan, "?status=ended").await;
    assert_eq!(ids(&body), vec![ended.to_string()]);

    // Cursor pagination: every live session exactly once, in order, whatever the page size.
    for limit in [1, 3, 7, 8, 100] {
        let pages = all_pages(&stack, fan, &format!("?limit={limit}")).await;
        let seen: Vec<String> = pages.iter().flat_map(ids).collect();
        assert_eq!(seen, newest_first, "limit {limit}");
        assert_eq!(pages.len(), 8usize.div_ceil(limit).max(1), "limit {limit}");
        for p in &pages {
            assert!(ids(p).len() <= limit);
        }
        assert_eq!(
            seen.iter().collect::<HashSet<_>>().len(),
            seen.len(),
            "no session twice"
        );
    }
    let pages = all_pages(&stack, fan, "?type=video_live&limit=2").await;
    let seen: Vec<String> = pages.iter().flat_map(ids).collect();
    let video: Vec<String> = live
        .iter()
        .rev()
        .filter(|(_, _, k)| *k == "video_live")
        .map(|(_, id, _)| id.to_string())
        .collect();
    assert_eq!(seen, video);

    // Bad parameters.
    for q in [
        "?limit=0",
        "?limit=101",
        "?limit=-1",
        "?limit=abc",
        "?cursor=not-a-cursor!",
        "?cursor=bm9uc2Vuc2U",
        "?cursor=",
        "?status=running",
        "?status=LIVE",
        "?type=video_call",
    ] {
        let (status, body) = list(&stack, fan, q).await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
}

// ---------------------------------------------------------------- leave

#[tokio::test]
async fn leave_is_for_participants() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let viewer = testkit::profile(&stack.db, "viewer", false, None).await;
    let stranger = testkit::profile(&stack.db, "stranger", false, None).await;
    let id = stack.live_session(creator, "video_live").await;
    stack.join(&stack.token(viewer, id).await).await;
    stack
        .wait_session(creator, id, "one viewer", |s| s["viewerCount"] == json!(1))
        .await;

    let (status, body) = post_action(&stack, stranger, id, "leave").await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = post_action(&stack, viewer, Uuid::new_v4(), "leave").await;
    assert_error(status, &body, 404, "SESSION_NOT_FOUND");
    let (status, body) = post_action(&stack, viewer, "nope", "leave").await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");

    let (status, body) = post_action(&stack, viewer, id, "leave").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], json!(true));
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM live_participants WHERE session_id = $1 AND user_id = $2 AND NOT is_active",
                &[&id, &viewer]
            )
            .await,
        1
    );
    // The session itself is untouched.
    assert_eq!(stack.session(creator, id).await["status"], json!("live"));
}

#[tokio::test]
async fn leave_updates_the_viewer_count() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let viewer = testkit::profile(&stack.db, "viewer", false, None).await;
    let id = stack.live_session(creator, "video_live").await;
    stack.join(&stack.token(viewer, id).await).await;
    stack
        .wait_session(creator, id, "one viewer", |s| s["viewerCount"] == json!(1))
        .await;
    let (status, body) = post_action(&stack, viewer, id, "leave").await;
    assert_eq!(status, 200, "{body}");
    let active = stack
        .count(
            "SELECT count(*) FROM live_participants WHERE session_id = $1 AND role <> 'host' AND is_active",
            &[&id],
        )
        .await;
    assert_eq!(active, 0);
    let s = stack.session(creator, id).await;
    assert_eq!(
        s["viewerCount"],
        json!(active),
        "viewerCount counts the active viewers: {s}"
    );
}

// ---------------------------------------------------------------- pause / resume

#[tokio::test]
async fn pause_and_resume_are_for_the_host_and_follow_the_state_machine() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let other = testkit::profile(&stack.db, "other", true, None).await;
    let id = stack.public_session(creator).await;

    // created: neither pause nor resume.
    let (status, body) = post_action(&stack, creator, id, "pause").await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    let (status, body) = post_action(&stack, creator, id, "resume").await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    assert_eq!(stack.session(creator, id).await["status"], json!("created"));

    stack.join(&stack.token(creator, id).await).await;
    stack
        .wait_session(creator, id, "live", |s| s["status"] == json!("live"))
        .await;
    let (status, body) = post_action(&stack, creator, id, "resume").await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");

    // Another user (a creator too) may not.
    let (status, body) = post_action(&stack, other, id, "pause").await;
    assert_error(status, &body, 403, "FORBIDDEN");
    assert_eq!(stack.session(creator, id).await["status"], json!("live"));
    // Unknown or malformed ids.
    let (status, body) = post_action(&stack, creator, Uuid::new_v4(), "pause").await;
    assert_error(status, &body, 404, "SESSION_NOT_FOUND");
    let (status, body) = post_action(&stack, creator, "x", "resume").await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");

    for round in 0..2 {
        let (status, body) = post_action(&stack, creator, id, "pause").await;
        assert_eq!(status, 200, "round {round}: {body}");
        assert_eq!(body["session"]["status"], json!("paused"));
        assert_eq!(stack.session(other, id).await["status"], json!("paused"));
        let (status, body) = post_action(&stack, creator, id, "pause").await;
        assert_error(status, &body, 409, "INVALID_TRANSITION");
        let (status, body) = post_action(&stack, other, id, "resume").await;
        assert_error(status, &body, 403, "FORBIDDEN");
        let (status, body) = post_action(&stack, creator, id, "resume").await;
        assert_eq!(status, 200, "round {round}: {body}");
        assert_eq!(body["session"]["status"], json!("live"));
        assert_eq!(stack.session(other, id).await["status"], json!("live"));
    }
}

// ---------------------------------------------------------------- end

#[tokio::test]
async fn end_is_for_the_host_happens_once_and_deletes_the_room() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let viewer = testkit::profile(&stack.db, "viewer", false, None).await;
    let id = stack.live_session(creator, "video_live").await;
    let room = format!("live_video_{id}");
    stack.join(&stack.token(viewer, id).await).await;
    stack
        .wait_session(creator, id, "one viewer", |s| s["viewerCount"] == json!(1))
        .await;

    let (status, body) = post_action(&stack, viewer, id, "end").await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = post_action(&stack, creator, Uuid::new_v4(), "end").await;
    assert_error(status, &body, 404, "SESSION_NOT_FOUND");
    assert!(stack.sim_rooms().await.to_string().contains(&room));

    let (status, body) = post_action(&stack, creator, id, "end").await;
    assert_eq!(status, 200, "{body}");
    let s = &body["session"];
    assert_eq!(s["status"], json!("ended"));
    assert_eq!(s["endReason"], json!("host_ended"));
    assert!(s["endedAt"].is_string(), "{s}");
    assert_eq!(s["viewerCount"], json!(0));
    assert_eq!(s["peakViewers"], json!(1));
    assert!(
        !stack.sim_rooms().await.to_string().contains(&room),
        "the LiveKit room is deleted"
    );
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM live_participants WHERE session_id = $1 AND is_active",
                &[&id]
            )
            .await,
        0
    );

    for action in ["end", "pause", "resume"] {
        let (status, body) = post_action(&stack, creator, id, action).await;
        assert_error(status, &body, 409, "INVALID_TRANSITION");
    }
    let (status, body) = post_action(&stack, viewer, id, "end").await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let s = stack.session(viewer, id).await;
    assert_eq!(s["endReason"], json!("host_ended"), "{s}");
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM outbox WHERE subject LIKE '%.session.ended'",
                &[]
            )
            .await,
        1,
        "one session.ended event"
    );
}

// ---------------------------------------------------------------- health, metrics

#[tokio::test]
async fn health_and_metrics() {
    let stack = stack().await;
    let res = stack
        .http
        .get(format!("{}/health", stack.sessions))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], json!("healthy"), "{body}");
    assert_eq!(body["checks"]["database"]["status"], json!("ok"), "{body}");
    assert_eq!(body["checks"]["nats"]["status"], json!("ok"), "{body}");

    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    stack.public_session(creator).await;
    let res = stack
        .http
        .get(format!("{}/metrics", stack.sessions))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("http_request_duration_seconds"), "{text}");

    // An unknown route gets the envelope too.
    let (status, body) = stack
        .call(
            Method::GET,
            format!("{}/v1/nothing-here", stack.sessions),
            creator,
            None,
        )
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
}

#[tokio::test]
async fn health_checks_livekit_too() {
    let stack = stack().await;
    let body: Value = stack
        .http
        .get(format!("{}/health", stack.sessions))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["checks"]["livekit"]["status"], json!("ok"), "{body}");
}
