use serde_json::json;
use uuid::Uuid;

use crate::{TestApp, assert_error, claims, spawn_app};

async fn call(app: &TestApp, caller: Uuid, callee: Uuid, call_type: &str, status: &str) -> Uuid {
    let id = Uuid::now_v7();
    let kind = if call_type == "video_call" {
        "video"
    } else {
        "audio"
    };
    let active = matches!(status, "initiated" | "ringing" | "accepted" | "live");
    app.exec(
        "INSERT INTO calls (id, caller_id, callee_id, call_type, status, room_name, ended_at)
         VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN NULL ELSE now() END)",
        &[
            &id,
            &caller,
            &callee,
            &call_type,
            &status,
            &format!("call_{kind}_{id}_1700000000"),
            &active,
        ],
    )
    .await;
    id
}

#[tokio::test]
async fn both_parties_of_an_accepted_call_get_tokens() {
    let app = spawn_app().await;
    let a = testkit::profile(&app.db, "alice", false, None).await;
    let b = testkit::profile(&app.db, "bob", false, None).await;
    let id = call(&app, a, b, "video_call", "accepted").await;
    let (status, body) = app.token(a, json!({ "callId": id })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], json!("caller"));
    assert_eq!(
        body["roomName"],
        json!(format!("call_video_{id}_1700000000"))
    );
    let c = claims(&body);
    assert!(c.video.can_publish_source("camera") && c.video.can_publish_source("microphone"));
    let (_, body) = app.token(b, json!({ "callId": id })).await;
    assert_eq!(body["role"], json!("callee"));
}

#[tokio::test]
async fn audio_calls_publish_the_microphone_only() {
    let app = spawn_app().await;
    let a = testkit::profile(&app.db, "alice", false, None).await;
    let b = testkit::profile(&app.db, "bob", false, None).await;
    let id = call(&app, a, b, "audio_call", "live").await;
    let (_, body) = app.token(b, json!({ "callId": id })).await;
    assert_eq!(
        claims(&body).video.can_publish_sources,
        vec!["microphone".to_string()]
    );
}

#[tokio::test]
async fn strangers_and_wrong_states_are_refused() {
    let app = spawn_app().await;
    let a = testkit::profile(&app.db, "alice", false, None).await;
    let b = testkit::profile(&app.db, "bob", false, None).await;
    let eve = testkit::profile(&app.db, "eve", false, None).await;
    let ringing = call(&app, a, b, "audio_call", "ringing").await;
    // A stranger does not learn that the call exists.
    let (status, body) = app.token(eve, json!({ "callId": ringing })).await;
    assert_error(status, &body, 404, "CALL_NOT_FOUND");
    let (status, body) = app.token(eve, json!({ "callId": Uuid::new_v4() })).await;
    assert_error(status, &body, 404, "CALL_NOT_FOUND");
    // The caller may be in the room first while it rings; the callee only after accepting.
    assert_eq!(app.token(a, json!({ "callId": ringing })).await.0, 200);
    let (status, body) = app.token(b, json!({ "callId": ringing })).await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    let ended = call(&app, a, eve, "audio_call", "ended").await;
    let (status, body) = app.token(a, json!({ "callId": ended })).await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
}
