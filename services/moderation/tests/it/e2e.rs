//! End to end through livekit-sim: bans remove and keep out, terminate ends and deletes.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{self, assert_error};

#[tokio::test]
async fn a_banned_viewer_is_removed_cannot_get_a_token_and_is_removed_again_on_rejoin() {
    let stack = support::stack().await;
    let host = stack.user("host", true, None).await;
    let viewer = stack.user("viewer", false, None).await;
    let session = stack.live_session(host, "video_live").await;
    let room = stack.session(host, session).await["roomName"]
        .as_str()
        .unwrap()
        .to_owned();
    // A token taken before the ban: LiveKit would keep accepting (and refreshing) it.
    let old_token = stack.token(viewer, session).await;
    stack.join(&old_token).await;
    testkit::eventually(
        Duration::from_secs(20),
        "the viewer in the room",
        || async { stack.is_active(session, viewer).await.then_some(()) },
    )
    .await;

    let (status, body) = stack
        .md(
            Method::POST,
            &format!("/v1/moderation/sessions/{session}/bans"),
            host,
            Some(json!({"userId": viewer, "reason": "spam"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["ban"]["userId"], json!(viewer));
    assert_eq!(body["ban"]["reason"], json!("spam"));
    assert_eq!(body["removed"], json!(true));
    let host_only = vec![host.to_string()];
    assert_eq!(stack.room_identities(&room).await, Some(host_only.clone()));

    // token-issuer refuses them from now on.
    let (status, body) = stack.try_token(viewer, session).await;
    assert_error(status, &body, 403, "BANNED");

    // The old token still connects (no revocation in LiveKit): the join is undone at once.
    stack.join(&old_token).await;
    testkit::eventually(
        Duration::from_secs(20),
        "the banned viewer removed again",
        || async {
            (stack.room_identities(&room).await == Some(host_only.clone())
                && stack.outbox_events("moderation.banned_removed").await == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(stack.outbox_events("moderation.session_ban").await, 1);

    // Lifted: a token again.
    let (status, body) = stack
        .md(
            Method::DELETE,
            &format!("/v1/moderation/sessions/{session}/bans/{viewer}"),
            host,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = stack.try_token(viewer, session).await;
    assert_eq!(status, 200);
    stack.shutdown().await;
}

#[tokio::test]
async fn creator_and_global_bans_are_refused_by_token_issuer_and_enforced_on_join() {
    let stack = support::stack().await;
    let host = stack.user("host", true, None).await;
    let fan = stack.user("fan", false, None).await;
    let troll = stack.user("troll", false, None).await;
    let ops = stack.operator().await;
    let session = stack.live_session(host, "audio_room").await;
    let room = stack.session(host, session).await["roomName"]
        .as_str()
        .unwrap()
        .to_owned();
    let fan_token = stack.token(fan, session).await;
    let troll_token = stack.token(troll, session).await;

    let (status, body) = stack
        .md(
            Method::POST,
            "/v1/moderation/creator-bans",
            host,
            Some(json!({"userId": fan})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = stack.try_token(fan, session).await;
    assert_error(status, &body, 403, "BANNED");

    let (status, body) = stack
        .md(
            Method::POST,
            &format!("/v1/ops/users/{troll}/ban"),
            ops,
            Some(json!({"hours": 24, "reason": "abuse"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["user"]["bannedUntil"].is_string(), "{body}");
    let (status, body) = stack.try_token(troll, session).await;
    assert_error(status, &body, 403, "BANNED");

    // Both come back with tokens from before: removed on join.
    stack.join(&fan_token).await;
    stack.join(&troll_token).await;
    testkit::eventually(Duration::from_secs(20), "both removed on join", || async {
        (stack.outbox_events("moderation.banned_removed").await == 2
            && stack.room_identities(&room).await == Some(vec![host.to_string()]))
        .then_some(())
    })
    .await;

    let (status, _) = stack
        .md(
            Method::DELETE,
            &format!("/v1/ops/users/{troll}/ban"),
            ops,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = stack.try_token(troll, session).await;
    assert_eq!(status, 200);
    stack.shutdown().await;
}

#[tokio::test]
async fn an_operator_terminates_a_session_and_its_room_is_gone() {
    let stack = support::stack().await;
    let host = stack.user("host", true, None).await;
    let viewer = stack.user("viewer", false, None).await;
    let ops = stack.operator().await;
    let session = stack.live_session(host, "video_live").await;
    stack.join_session(viewer, session).await;
    let room = stack.session(host, session).await["roomName"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(stack.room_identities(&room).await.is_some());

    let (status, body) = stack
        .md(
            Method::POST,
            &format!("/v1/ops/sessions/{session}/terminate"),
            ops,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["terminated"], json!(true));
    assert_eq!(body["session"]["status"], json!("ended"));
    assert_eq!(body["session"]["endReason"], json!("admin_terminated"));
    testkit::eventually(Duration::from_secs(20), "the room deleted", || async {
        stack.room_identities(&room).await.is_none().then_some(())
    })
    .await;
    let s = stack.session(viewer, session).await;
    assert_eq!(s["endReason"], json!("admin_terminated"));

    // Again: the session has ended.
    let (status, body) = stack
        .md(
            Method::POST,
            &format!("/v1/ops/sessions/{session}/terminate"),
            ops,
            None,
        )
        .await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    // The event was applied once.
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM processed_events WHERE consumer = 'session-manager-moderation'",
                &[]
            )
            .await,
        1
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_host_kicks_a_viewer_who_may_come_back() {
    let stack = support::stack().await;
    let host = stack.user("host", true, None).await;
    let viewer = stack.user("viewer", false, None).await;
    let session = stack.live_session(host, "video_live").await;
    stack.join_session(viewer, session).await;
    let room = stack.session(host, session).await["roomName"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = stack
        .md(
            Method::POST,
            &format!("/v1/moderation/sessions/{session}/kick"),
            host,
            Some(json!({"userId": viewer})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        stack.room_identities(&room).await,
        Some(vec![host.to_string()])
    );
    // Not in the room any more: nothing to kick.
    let (status, body) = stack
        .md(
            Method::POST,
            &format!("/v1/moderation/sessions/{session}/kick"),
            host,
            Some(json!({"userId": viewer})),
        )
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
    // They may re-join, and stay.
    stack.join(&stack.token(viewer, session).await).await;
    let mut ids = vec![host.to_string(), viewer.to_string()];
    ids.sort();
    assert_eq!(stack.room_identities(&room).await, Some(ids));
    assert_eq!(stack.outbox_events("moderation.kick").await, 1);
    stack.shutdown().await;
}
