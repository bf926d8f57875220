//! The stage end to end through livekit-sim: a viewer goes on stage, LiveKit records the new
//! permissions, the guest publishes (the sim accepts what the permission allows and nothing
//! more), the turn ends and the rights are revoked with the tracks unpublished — for a video
//! co-host and for an audio room's speaker.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::stage::{end_path, invitation_path, invite_path, request_path, requests_path};
use crate::{Stack, stack};

/// `POST /sim/publish`: the status the sim answers.
async fn publish(stack: &Stack, room: &str, who: Uuid, source: &str) -> u16 {
    stack
        .http
        .post(format!("{}/sim/publish", stack.sim.base_url()))
        .json(&json!({"room": room, "identity": who.to_string(), "source": source}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The participant as the sim holds it (permission and tracks).
async fn in_sim(stack: &Stack, room: &str, who: Uuid) -> Value {
    let rooms = stack.sim_rooms().await;
    rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == json!(room))
        .and_then(|r| {
            r["participants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["identity"] == json!(who.to_string()))
                .cloned()
        })
        .unwrap_or(Value::Null)
}

/// The role token-issuer gives the user now.
async fn token_role(stack: &Stack, user: Uuid, session: Uuid) -> String {
    let (status, body) = stack
        .call(
            reqwest::Method::POST,
            format!("{}/v1/tokens", stack.tokens),
            user,
            Some(json!({"sessionId": session})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["role"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_video_co_host_gets_camera_and_microphone_live_and_loses_them() {
    let stack = stack().await;
    let (host, session) = stack.host_live("video_live").await;
    let room = format!("live_video_{session}");
    let guest = stack.viewer(session, "guest").await;
    assert_eq!(publish(&stack, &room, guest, "camera").await, 403);
    assert_eq!(token_role(&stack, guest, session).await, "viewer");

    let (status, body) = stack
        .post(host, &invite_path(session), Some(json!({"userId": guest})))
        .await;
    assert_eq!(status, 201, "{body}");
    let inv = body["invitation"]["id"].as_str().unwrap().to_owned();
    let (status, body) = stack
        .post(
            guest,
            &invitation_path(session, &inv),
            Some(json!({"accept": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // LiveKit was told, with the whole permission written back.
    let updates = stack.sim_updates(guest).await;
    assert_eq!(
        updates,
        [(true, vec!["camera".to_owned(), "microphone".to_owned()])]
    );
    let p = in_sim(&stack, &room, guest).await;
    assert_eq!(
        p["permission"],
        json!({
            "canPublish": true,
            "canSubscribe": true,
            "canPublishData": true,
            "canPublishSources": ["camera", "microphone"],
            "hidden": false,
            "canUpdateMetadata": false,
        })
    );
    // The guest publishes without re-joining; a screen share is not a co-host's.
    assert_eq!(publish(&stack, &room, guest, "camera").await, 200);
    assert_eq!(publish(&stack, &room, guest, "microphone").await, 200);
    assert_eq!(publish(&stack, &room, guest, "screen_share").await, 403);
    assert_eq!(token_role(&stack, guest, session).await, "co_host");

    let (status, body) = stack.post(host, &end_path(session, guest), None).await;
    assert_eq!(status, 200, "{body}");
    let p = in_sim(&stack, &room, guest).await;
    assert_eq!(p["permission"]["canPublish"], json!(false), "{p}");
    assert_eq!(p["permission"]["canSubscribe"], json!(true), "{p}");
    assert_eq!(p["permission"]["canPublishData"], json!(true), "{p}");
    assert_eq!(p["tracks"], json!([]), "revoking unpublishes: {p}");
    assert_eq!(publish(&stack, &room, guest, "camera").await, 403);
    assert_eq!(
        stack.sim_updates(guest).await.last(),
        Some(&(false, vec![]))
    );
    // Its tracks were muted before the revocation.
    let mutes: Value = stack
        .http
        .get(format!(
            "{}/sim/calls?method=MutePublishedTrack",
            stack.sim.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mutes.as_array().unwrap().len(), 2, "{mutes}");
    assert_eq!(token_role(&stack, guest, session).await, "viewer");
    assert_eq!(
        stack.role_of(session, guest).await.0.as_deref(),
        Some("viewer")
    );
    // LiveKit's track_unpublished webhooks arrive and change nothing of the stage.
    stack.wait_webhooks_handled().await;
    assert_eq!(
        stack.guest_event_names(session).await,
        ["guest_invited", "guest_accepted", "guest_ended"]
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn an_audio_room_speaker_gets_the_microphone_only() {
    let stack = stack().await;
    let (host, session) = stack.host_live("audio_room").await;
    let room = format!("audio_room_{session}");
    let speaker = stack.viewer(session, "speaker").await;
    assert_eq!(
        stack.role_of(session, speaker).await.0.as_deref(),
        Some("listener")
    );
    assert_eq!(publish(&stack, &room, speaker, "microphone").await, 403);

    let (status, body) = stack.post(speaker, &requests_path(session), None).await;
    assert_eq!(status, 201, "{body}");
    let req = body["request"]["id"].as_str().unwrap().to_owned();
    let (status, body) = stack
        .post(
            host,
            &request_path(session, &req),
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        stack.sim_updates(speaker).await,
        [(true, vec!["microphone".to_owned()])]
    );
    assert_eq!(publish(&stack, &room, speaker, "microphone").await, 200);
    assert_eq!(publish(&stack, &room, speaker, "camera").await, 403);
    assert_eq!(token_role(&stack, speaker, session).await, "speaker");

    // The speaker steps down by itself.
    let (status, body) = stack.post(speaker, &end_path(session, speaker), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["guest"]["role"], json!("listener"));
    let p = in_sim(&stack, &room, speaker).await;
    assert_eq!(p["permission"]["canPublish"], json!(false), "{p}");
    assert_eq!(p["tracks"], json!([]), "{p}");
    assert_eq!(publish(&stack, &room, speaker, "microphone").await, 403);
    assert_eq!(token_role(&stack, speaker, session).await, "listener");
    testkit::eventually(Duration::from_secs(10), "the events", || async {
        (stack.guest_event_names(session).await
            == ["guest_requested", "guest_approved", "guest_ended"])
        .then_some(())
    })
    .await;
    stack.shutdown().await;
}

/// A guest who fetched a token while on stage, was taken off it and comes back with that
/// token: LiveKit would let them publish (the token says co-host); session-manager takes it
/// away again when the join is reported.
#[tokio::test]
async fn an_ex_guest_rejoining_with_a_stale_token_cannot_publish() {
    let stack = stack().await;
    let (host, session) = stack.host_live("video_live").await;
    let room = format!("live_video_{session}");
    let guest = stack.viewer(session, "guest").await;
    let (status, body) = stack.post(guest, &requests_path(session), None).await;
    assert_eq!(status, 201, "{body}");
    let req = body["request"]["id"].as_str().unwrap().to_owned();
    let (status, body) = stack
        .post(
            host,
            &request_path(session, &req),
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let stale = stack.token(guest, session).await;
    let (status, _) = stack.post(host, &end_path(session, guest), None).await;
    assert_eq!(status, 200);
    stack.sim("leave", &room, guest).await;
    stack.wait_webhooks_handled().await;

    stack.join(&stale).await;
    testkit::eventually(
        Duration::from_secs(20),
        "the stale rights revoked",
        || async {
            let p = in_sim(&stack, &room, guest).await;
            (p["permission"]["canPublish"] == json!(false)).then_some(())
        },
    )
    .await;
    assert_eq!(publish(&stack, &room, guest, "camera").await, 403);
    assert_eq!(
        stack.role_of(session, guest).await.0.as_deref(),
        Some("viewer")
    );
    // Granted on approval, revoked at the end of the turn, revoked again at the stale join.
    assert_eq!(
        stack.sim_updates(guest).await,
        [
            (true, vec!["camera".to_owned(), "microphone".to_owned()]),
            (false, vec![]),
            (false, vec![]),
        ]
    );
    stack.shutdown().await;
}
