//! A broadcast that follows LiveKit, through real HTTP and livekit-sim.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::stack;

async fn viewers(stack: &crate::Stack, n: usize) -> Vec<Uuid> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(testkit::profile(&stack.db, &format!("viewer{i}"), false, None).await);
    }
    out
}

#[tokio::test]
async fn a_broadcast_goes_live_gathers_100_viewers_and_ends_after_the_host_drops() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let id = stack.public_session(creator).await;
    let s = stack.session(creator, id).await;
    assert_eq!(s["status"], json!("created"));
    let room = s["roomName"].as_str().unwrap().to_owned();
    assert_eq!(room, format!("live_video_{id}"));
    // The room exists in LiveKit before anyone joins (created explicitly).
    let rooms = stack.sim_rooms().await;
    assert!(rooms.to_string().contains(&room), "{rooms}");

    let host_token = stack.token(creator, id).await;
    stack.join(&host_token).await;
    stack
        .wait_session(creator, id, "the session to go live", |s| {
            s["status"] == json!("live")
        })
        .await;

    let audience = viewers(&stack, 100).await;
    let tokens = futures_util::future::join_all(audience.iter().map(|v| stack.token(*v, id))).await;
    futures_util::future::join_all(tokens.iter().map(|t| stack.join(t))).await;
    let s = stack
        .wait_session(creator, id, "100 viewers", |s| {
            s["viewerCount"] == json!(100)
        })
        .await;
    assert_eq!(s["peakViewers"], json!(100));

    stack.sim("drop", &room, creator).await;
    let s = stack
        .wait_session(creator, id, "host_disconnected", |s| {
            s["status"] == json!("host_disconnected")
        })
        .await;
    assert!(s["hostLeftAt"].is_string());
    let s = stack
        .wait_session(creator, id, "the end after the grace", |s| {
            s["status"] == json!("ended")
        })
        .await;
    assert_eq!(s["endReason"], json!("host_disconnected"), "{s}");
    assert_eq!(s["peakViewers"], json!(100));
    assert_eq!(s["viewerCount"], json!(0));
    // The room is deleted.
    testkit::eventually(
        Duration::from_secs(10),
        "the room to be deleted",
        || async { (!stack.sim_rooms().await.to_string().contains(&room)).then_some(()) },
    )
    .await;
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM live_participants WHERE session_id = $1 AND is_active",
                &[&id]
            )
            .await,
        0
    );
    assert_eq!(
        stack.count("SELECT count(*) FROM deadlines WHERE subject_id = $1 AND kind = 'session.host_grace' AND fired_at IS NOT NULL", &[&id]).await,
        1
    );
}

#[tokio::test]
async fn a_host_back_within_the_grace_keeps_the_session_live() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let viewer = testkit::profile(&stack.db, "viewer", false, None).await;
    let id = stack.public_session(creator).await;
    let room = format!("live_video_{id}");
    stack.join(&stack.token(creator, id).await).await;
    stack.join(&stack.token(viewer, id).await).await;
    stack
        .wait_session(creator, id, "live", |s| {
            s["status"] == json!("live") && s["viewerCount"] == json!(1)
        })
        .await;

    stack.sim("drop", &room, creator).await;
    stack
        .wait_session(creator, id, "host_disconnected", |s| {
            s["status"] == json!("host_disconnected")
        })
        .await;
    stack.join(&stack.token(creator, id).await).await;
    stack
        .wait_session(creator, id, "live again", |s| s["status"] == json!("live"))
        .await;
    // Well past the grace: still live, and the grace deadline was cancelled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = stack.session(creator, id).await;
    assert_eq!(s["status"], json!("live"), "{s}");
    assert!(s["hostLeftAt"].is_null());
    assert_eq!(
        stack.count("SELECT count(*) FROM deadlines WHERE subject_id = $1 AND kind = 'session.host_grace' AND cancelled_at IS NOT NULL", &[&id]).await,
        1
    );
}

#[tokio::test]
async fn a_reconnect_is_not_a_departure() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let id = stack.public_session(creator).await;
    let token = stack.token(creator, id).await;
    let first = stack.join(&token).await;
    stack
        .wait_session(creator, id, "live", |s| s["status"] == json!("live"))
        .await;
    // The same identity joins again: LiveKit sends the new join, then the old sid's
    // DUPLICATE_IDENTITY leave.
    let second = stack.join(&token).await;
    assert_ne!(first, second);
    assert!(stack.sim.wait_webhooks_sent(Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = stack.session(creator, id).await;
    assert_eq!(s["status"], json!("live"), "{s}");
}

#[tokio::test]
async fn the_host_ends_the_session_and_the_room_is_deleted() {
    let stack = stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let id = stack.public_session(creator).await;
    stack.join(&stack.token(creator, id).await).await;
    stack
        .wait_session(creator, id, "live", |s| s["status"] == json!("live"))
        .await;
    let (status, body) = stack
        .call(
            reqwest::Method::POST,
            format!("{}/v1/sessions/{id}/end", stack.sessions),
            creator,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["status"], json!("ended"));
    assert_eq!(body["session"]["endReason"], json!("host_ended"));
    assert!(
        !stack
            .sim_rooms()
            .await
            .to_string()
            .contains(&format!("live_video_{id}"))
    );
    let (status, body) = stack
        .call(
            reqwest::Method::POST,
            format!("{}/v1/sessions/{id}/end", stack.sessions),
            creator,
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errorCode"], json!("INVALID_TRANSITION"));
}
