//! Every route: the happy paths, each bad input and each forbidden actor.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::{assert_error, stack};

#[tokio::test]
async fn initiate_refuses_bad_auth_and_bad_bodies_storing_nothing() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let url = format!("{}/v1/calls", s.calls);
    let good = serde_json::to_vec(&json!({"calleeId": b, "callType": "audio_call"})).unwrap();

    // Authentication.
    for auth in [
        None,
        Some("Bearer nonsense".to_owned()),
        Some(format!(
            "Bearer {}",
            auth::mint(b"another-secret-entirely-32-bytes!!", a, 60)
        )),
        Some(format!("Bearer {}", testkit::token_for(Uuid::new_v4()))), // no profile
    ] {
        let (status, body) = s
            .raw(
                Method::POST,
                url.clone(),
                auth,
                Some("application/json"),
                Some(good.clone()),
            )
            .await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
    }

    // Bodies.
    let bearer = Some(format!("Bearer {}", testkit::token_for(a)));
    let bad: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        b"[]".to_vec(),
        br#"{"callType":"audio_call"}"#.to_vec(),
        serde_json::to_vec(&json!({"calleeId": b})).unwrap(),
        serde_json::to_vec(&json!({"calleeId": "not-a-uuid", "callType": "audio_call"})).unwrap(),
        serde_json::to_vec(&json!({"calleeId": b, "callType": "hologram_call"})).unwrap(),
        serde_json::to_vec(&json!({"calleeId": b, "callType": 7})).unwrap(),
        serde_json::to_vec(&json!({"calleeId": b, "callType": "audio_call", "extra": 1})).unwrap(),
        serde_json::to_vec(&json!({"calleeId": a, "callType": "audio_call"})).unwrap(), // self
    ];
    for body in bad {
        let (status, res) = s
            .raw(
                Method::POST,
                url.clone(),
                bearer.clone(),
                Some("application/json"),
                Some(body.clone()),
            )
            .await;
        assert_error(status, &res, 422, "VALIDATION_ERROR");
    }
    let huge = serde_json::to_vec(
        &json!({"calleeId": b, "callType": "audio_call", "pad": "x".repeat(70_000)}),
    )
    .unwrap();
    let (status, res) = s
        .raw(
            Method::POST,
            url.clone(),
            bearer.clone(),
            Some("application/json"),
            Some(huge),
        )
        .await;
    assert_error(status, &res, 413, "PAYLOAD_TOO_LARGE");

    // Unknown callee.
    let (status, res) = s.initiate(a, Uuid::new_v4(), "audio_call").await;
    assert_error(status, &res, 404, "NOT_FOUND");

    assert_eq!(s.count("SELECT count(*) FROM calls", &[]).await, 0);
    assert_eq!(s.count("SELECT count(*) FROM call_busy", &[]).await, 0);
    assert_eq!(s.count("SELECT count(*) FROM outbox", &[]).await, 0);
    assert!(s.sim_rooms().await.is_empty(), "no room was created");
    s.shutdown().await;
}

#[tokio::test]
async fn blocked_and_banned_callers_cannot_call() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let sql = s.sql().await;
    sql.execute(
        "INSERT INTO user_blocks (blocker_id, blocked_id) VALUES ($1, $2)",
        &[&b, &a],
    )
    .await
    .unwrap();
    let (status, body) = s.initiate(a, b, "audio_call").await;
    assert_error(status, &body, 403, "FORBIDDEN");
    // The block is one way.
    let id = s.start_call(b, a).await;
    let (status, _) = s.act(b, id, "cancel").await;
    assert_eq!(status, 200);

    // A creator's ban of a user covers calls to that creator.
    sql.execute(
        "INSERT INTO creator_bans (creator_id, user_id) VALUES ($1, $2)",
        &[&c, &a],
    )
    .await
    .unwrap();
    let (status, body) = s.initiate(a, c, "video_call").await;
    assert_error(status, &body, 403, "FORBIDDEN");

    // A global ban.
    sql.execute(
        "UPDATE profiles SET banned_until = now() + interval '1 hour' WHERE id = $1",
        &[&c],
    )
    .await
    .unwrap();
    let (status, body) = s.initiate(c, b, "video_call").await;
    assert_error(status, &body, 403, "BANNED");
    assert_eq!(s.count("SELECT count(*) FROM calls", &[]).await, 1);
    s.shutdown().await;
}

#[tokio::test]
async fn a_call_rings_is_accepted_and_ended_with_one_event_per_step() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let (status, body) = s.initiate(a, b, "audio_call").await;
    assert_eq!(status, 201, "{body}");
    let call = &body["call"];
    assert_eq!(body["success"], json!(true));
    assert_eq!(call["callerId"], json!(a));
    assert_eq!(call["calleeId"], json!(b));
    assert_eq!(call["callType"], json!("audio_call"));
    assert_eq!(call["status"], json!("initiated"));
    let room = call["roomName"].as_str().unwrap().to_owned();
    assert!(room.starts_with("call_audio_"), "{room}");
    assert!(
        s.sim_rooms().await.contains(&room),
        "the room exists before anyone joins"
    );
    let id: Uuid = call["id"].as_str().unwrap().parse().unwrap();

    s.push_result(id, b, true, 2, "").await;
    let ringing = s.wait_status(b, id, "ringing").await;
    assert!(ringing["ringingAt"].is_string());
    let (status, body) = s.act(b, id, "accept").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["call"]["status"], json!("accepted"));
    assert!(body["call"]["answeredAt"].is_string());
    let (status, body) = s.act(a, id, "end").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["call"]["status"], json!("ended"));
    assert_eq!(body["call"]["endedReason"], json!("caller_ended"));
    assert!(body["call"]["endedAt"].is_string());
    assert!(
        !s.sim_rooms().await.contains(&room),
        "ending deleted the room"
    );
    for e in ["initiated", "ringing", "accepted", "ended"] {
        assert_eq!(s.events(id, e).await, 1, "one call.{e}");
    }
    assert_eq!(
        s.count("SELECT count(*) FROM call_busy", &[]).await,
        0,
        "both free again"
    );
    // Both parties may call again.
    s.start_call(b, a).await;
    s.shutdown().await;
}

#[tokio::test]
async fn rejected_and_cancelled_calls() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.ringing_call(a, b).await;
    let (status, body) = s.act(b, id, "reject").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["call"]["status"], json!("rejected"));
    assert_eq!(body["call"]["endedReason"], json!("rejected"));

    // Cancel while initiated, and while ringing.
    let id = s.start_call(a, b).await;
    let (status, body) = s.act(a, id, "cancel").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["call"]["status"], json!("cancelled"));
    let id = s.ringing_call(a, b).await;
    let (status, body) = s.act(a, id, "cancel").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["call"]["status"], json!("cancelled"));
    // A late push result changes nothing.
    s.push_result(id, b, true, 1, "").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.call(a, id).await["status"], json!("cancelled"));
    s.shutdown().await;
}

#[tokio::test]
async fn forbidden_actors_and_strangers() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let stranger = s.user("eve").await;
    let id = s.ringing_call(a, b).await;

    // A stranger is told the call does not exist, whatever it asks.
    for action in ["accept", "reject", "cancel", "end"] {
        let (status, body) = s.act(stranger, id, action).await;
        assert_error(status, &body, 404, "CALL_NOT_FOUND");
    }
    let (status, body) = s.get_call(stranger, id).await;
    assert_error(status, &body, 404, "CALL_NOT_FOUND");
    // The caller cannot answer its own call; the callee cannot cancel it.
    for action in ["accept", "reject"] {
        let (status, body) = s.act(a, id, action).await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    let (status, body) = s.act(b, id, "cancel").await;
    assert_error(status, &body, 403, "FORBIDDEN");
    assert_eq!(
        s.call(a, id).await["status"],
        json!("ringing"),
        "nothing changed"
    );

    // Unknown ids and malformed ones.
    let (status, body) = s.act(a, Uuid::new_v4(), "accept").await;
    assert_error(status, &body, 404, "CALL_NOT_FOUND");
    let (status, body) = s
        .request(
            Method::GET,
            format!("{}/v1/calls/not-a-uuid", s.calls),
            a,
            None,
        )
        .await;
    assert_eq!(status.as_u16() / 100, 4, "{body}");
    assert_eq!(body["success"], json!(false));
    let (status, body) = s
        .request(
            Method::POST,
            format!("{}/v1/calls/{id}/teleport", s.calls),
            a,
            None,
        )
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
    s.shutdown().await;
}

#[tokio::test]
async fn the_state_machine_refuses_what_it_does_not_allow() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    // initiated: cannot be accepted, rejected or ended yet.
    let id = s.start_call(a, b).await;
    for (who, action) in [(b, "accept"), (b, "reject"), (a, "end"), (b, "end")] {
        let (status, body) = s.act(who, id, action).await;
        assert_error(status, &body, 409, "INVALID_TRANSITION");
    }
    s.act(a, id, "cancel").await;
    // Terminal: nothing more.
    for (who, action) in [(b, "accept"), (b, "reject"), (a, "cancel"), (a, "end")] {
        let (status, body) = s.act(who, id, action).await;
        assert_error(status, &body, 409, "INVALID_TRANSITION");
    }
    // accepted: cannot be cancelled, rejected or accepted again.
    let id = s.accepted_call(a, b).await;
    for (who, action) in [(a, "cancel"), (b, "reject"), (b, "accept")] {
        let (status, body) = s.act(who, id, action).await;
        assert_error(status, &body, 409, "INVALID_TRANSITION");
    }
    let (status, body) = s.act(b, id, "end").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["call"]["endedReason"], json!("callee_ended"));
    s.shutdown().await;
}

#[tokio::test]
async fn busy_is_refused_and_kept_in_both_histories() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let first = s.start_call(a, b).await;

    // Carol calls Bob, who is in a call: BUSY for the callee.
    let (status, body) = s.initiate(c, b, "audio_call").await;
    assert_error(status, &body, 409, "BUSY");
    // Alice, in a call, calls Carol: BUSY for the caller.
    let (status, body) = s.initiate(a, c, "audio_call").await;
    assert_error(status, &body, 409, "BUSY");

    let history = |user| {
        let s = &s;
        async move {
            let (status, body) = s
                .request(
                    Method::GET,
                    format!("{}/v1/calls?status=busy", s.calls),
                    user,
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body["calls"].as_array().unwrap().clone()
        }
    };
    let carol = history(c).await;
    assert_eq!(carol.len(), 2, "{carol:?}");
    let bob = history(b).await;
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0]["callerId"], json!(c));
    assert_eq!(bob[0]["endedReason"], json!("callee_busy"));
    let alice = history(a).await;
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0]["endedReason"], json!("caller_busy"));
    assert_eq!(
        s.count(
            "SELECT count(*) FROM call_busy WHERE call_id = $1",
            &[&first]
        )
        .await,
        2,
        "only the first call holds the parties"
    );
    // Once the first call is over, Carol gets through.
    s.act(a, first, "cancel").await;
    s.start_call(c, b).await;
    s.shutdown().await;
}

#[tokio::test]
async fn history_pages_and_filters() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let stranger = s.user("eve").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = if i % 2 == 0 {
            s.start_call(a, b).await
        } else {
            s.start_call(b, a).await
        };
        s.act(if i % 2 == 0 { a } else { b }, id, "cancel").await;
        ids.push(id);
    }
    let url = |q: &str| format!("{}/v1/calls?{q}", s.calls);
    let (status, body) = s.request(Method::GET, url("limit=2"), a, None).await;
    assert_eq!(status, 200, "{body}");
    let page: Vec<String> = body["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        page,
        vec![ids[4].to_string(), ids[3].to_string()],
        "newest first"
    );
    let mut seen = page.clone();
    let mut cursor = body["nextCursor"].as_str().unwrap().to_owned();
    loop {
        let (_, body) = s
            .request(
                Method::GET,
                url(&format!("limit=2&cursor={cursor}")),
                a,
                None,
            )
            .await;
        seen.extend(
            body["calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        match body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let want: Vec<String> = ids.iter().rev().map(|i| i.to_string()).collect();
    assert_eq!(seen, want, "every call once, in order");
    let (_, body) = s
        .request(Method::GET, url("status=cancelled"), b, None)
        .await;
    assert_eq!(body["calls"].as_array().unwrap().len(), 5);
    let (_, body) = s.request(Method::GET, url("status=missed"), b, None).await;
    assert_eq!(body["calls"].as_array().unwrap().len(), 0);
    let (_, body) = s.request(Method::GET, url(""), stranger, None).await;
    assert_eq!(body["calls"], json!([]), "a stranger sees none of them");
    for q in [
        "limit=0",
        "limit=101",
        "limit=x",
        "status=bogus",
        "cursor=garbage",
        "color=red",
    ] {
        let (status, body) = s.request(Method::GET, url(q), a, None).await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn push_failures_fail_the_call() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.start_call(a, b).await;
    s.push_result(id, b, false, 0, "no_device").await;
    let call = s.wait_status(a, id, "failed").await;
    assert_eq!(call["endedReason"], json!("no_device"));
    let id = s.start_call(a, b).await;
    s.push_result(id, b, false, 2, "apns: 500").await;
    let call = s.wait_status(a, id, "failed").await;
    assert_eq!(call["endedReason"], json!("push_failed"));
    // A result delivered twice is handled once.
    let id = s.start_call(a, b).await;
    s.push_result(id, b, true, 1, "").await;
    s.push_result(id, b, true, 1, "").await;
    s.wait_status(a, id, "ringing").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.events(id, "ringing").await, 1);
    s.shutdown().await;
}
