use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn reconnect_sends_the_new_join_before_the_old_duplicate_identity_leave() {
    let t = TestSim::start().await;
    let tok = token("alice", &grant("room-d"));
    let first = t.join(&tok).await;
    let second = t.join(&tok).await;
    assert_ne!(first, second, "a full reconnect gets a new sid");
    t.settle().await;
    assert_eq!(
        t.names(),
        [
            "room_started".to_owned(),
            format!("participant_joined:{first}"),
            format!("participant_joined:{second}"),
            format!("participant_left:{first}:DUPLICATE_IDENTITY"),
        ]
    );
    let rooms = t.get("/sim/rooms").await;
    let ps = rooms[0]["participants"].as_array().unwrap();
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0]["sid"], second);
    t.stop().await;
}

#[tokio::test]
async fn the_leave_can_come_first_when_the_delay_is_off() {
    let t = TestSim::start().await;
    let (status, _) = t
        .post("/sim/faults", json!({"delayDuplicateIdentityLeave": false}))
        .await;
    assert_eq!(status, 200);
    let tok = token("alice", &grant("room-e"));
    let first = t.join(&tok).await;
    let second = t.join(&tok).await;
    t.settle().await;
    assert_eq!(
        t.names()[1..],
        [
            format!("participant_joined:{first}"),
            format!("participant_left:{first}:DUPLICATE_IDENTITY"),
            format!("participant_joined:{second}"),
        ]
    );
    t.stop().await;
}

#[tokio::test]
async fn leave_drop_and_abort_have_their_reasons() {
    let t = TestSim::start().await;
    let a = t.join(&token("alice", &grant("room-l"))).await;
    let b = t.join(&token("bob", &grant("room-l"))).await;
    let c = t.join(&token("carol", &grant("room-l"))).await;
    let (s, _) = t
        .post(
            "/sim/publish",
            json!({"room": "room-l", "identity": "alice", "source": "camera"}),
        )
        .await;
    assert_eq!(s, 200);
    let who = |id: &str| json!({"room": "room-l", "identity": id});
    assert_eq!(t.post("/sim/leave", who("alice")).await.0, 200);
    assert_eq!(t.post("/sim/drop", who("bob")).await.0, 200);
    assert_eq!(t.post("/sim/abort", who("carol")).await.0, 200);
    let (s, body) = t.post("/sim/leave", who("alice")).await;
    assert_eq!((s, body["code"].as_str()), (404, Some("not_found")));
    let (s, body) = t
        .post(
            "/sim/abort",
            json!({"token": token("dave", &grant("room-l"))}),
        )
        .await;
    assert_eq!(s, 200);
    let d = body["sid"].as_str().unwrap().to_owned();
    t.settle().await;
    let names = t.names();
    assert_eq!(
        names[5..],
        [
            format!("track_unpublished:{a}"),
            format!("participant_left:{a}:CLIENT_INITIATED"),
            format!("participant_left:{b}:SIGNAL_CLOSE"),
            format!("participant_connection_aborted:{c}:CONNECTION_TIMEOUT"),
            format!("participant_connection_aborted:{d}:CONNECTION_TIMEOUT"),
        ],
        "{names:?}"
    );
    t.stop().await;
}

#[tokio::test]
async fn publish_follows_the_token_permissions() {
    let t = TestSim::start().await;
    let mut audio = grant("room-p");
    audio.can_publish_sources = vec!["microphone".into()];
    t.join(&token("speaker", &audio)).await;
    let mut viewer = grant("room-p");
    viewer.can_publish = false;
    viewer.can_publish_sources = vec![];
    t.join(&token("viewer", &viewer)).await;
    let publish =
        |id: &str, source: &str| json!({"room": "room-p", "identity": id, "source": source});
    assert_eq!(
        t.post("/sim/publish", publish("speaker", "microphone"))
            .await
            .0,
        200
    );
    let (s, body) = t.post("/sim/publish", publish("speaker", "camera")).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("permission_denied")));
    assert_eq!(
        t.post("/sim/publish", publish("viewer", "microphone"))
            .await
            .0,
        403
    );
    assert_eq!(
        t.post("/sim/publish", publish("speaker", "hologram"))
            .await
            .0,
        400
    );
    assert_eq!(
        t.post("/sim/publish", publish("nobody", "camera")).await.0,
        404
    );

    let rooms = t.get("/sim/rooms").await;
    let speaker = &rooms[0]["participants"][0];
    assert_eq!(speaker["identity"], "speaker");
    assert_eq!(
        speaker["permission"]["canPublishSources"],
        json!(["microphone"])
    );
    assert_eq!(speaker["tracks"][0]["source"], "microphone");
    assert_eq!(
        rooms[0]["participants"][1]["permission"]["canPublish"],
        false
    );
    t.stop().await;
}
