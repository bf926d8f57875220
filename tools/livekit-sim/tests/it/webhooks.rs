use livekit::{Credentials, WebhookAuthError};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn join_sends_room_started_then_participant_joined_signed_like_livekit() {
    let t = TestSim::start().await;
    let (status, body) = t
        .post(
            "/sim/join",
            json!({ "token": token("alice", &grant("room-a")) }),
        )
        .await;
    assert_eq!(status, 200);
    let sid = body["sid"].as_str().unwrap();
    assert!(sid.starts_with("PA_"), "{sid}");
    assert_eq!(body["room"], "room-a");
    assert_eq!(body["identity"], "alice");
    t.settle().await;

    let hits = t.hits();
    assert_eq!(
        t.names(),
        [
            "room_started".to_owned(),
            format!("participant_joined:{sid}")
        ]
    );
    for hit in &hits {
        assert_eq!(
            hit.content_type.as_deref(),
            Some("application/webhook+json")
        );
        let auth = hit.authorization.as_deref().unwrap();
        assert!(!auth.starts_with("Bearer"), "LiveKit sends the raw JWT");
        assert_eq!(
            livekit::verify_webhook(&creds(), Some(auth), &hit.body),
            Ok(())
        );
        let wrong = Credentials::new(KEY, "another-secret");
        assert!(livekit::verify_webhook(&wrong, Some(auth), &hit.body).is_err());
        assert_eq!(
            livekit::verify_webhook(&creds(), Some(auth), b"{}"),
            Err(WebhookAuthError::BodyMismatch)
        );
    }

    let started = hits[0].json();
    let joined = hits[1].json();
    // protojson: int64 as strings, zero values omitted, enums by name.
    assert!(started["id"].as_str().unwrap().starts_with("EV_"));
    assert_ne!(started["id"], joined["id"]);
    assert!(started["createdAt"].is_string());
    assert!(started["room"]["creationTime"].is_string());
    assert!(started["room"]["sid"].as_str().unwrap().starts_with("RM_"));
    assert!(
        started["room"].get("numParticipants").is_none(),
        "{started}"
    );
    assert!(started.get("participant").is_none());
    assert_eq!(started["room"]["departureTimeout"], 1);
    assert_eq!(joined["room"]["numParticipants"], 1);
    let p = &joined["participant"];
    assert_eq!(p["sid"], sid);
    assert_eq!(p["identity"], "alice");
    assert_eq!(p["state"], "ACTIVE");
    assert!(p["joinedAt"].is_string());
    assert!(p.get("kind").is_none(), "STANDARD is the zero value: {p}");
    assert!(p.get("disconnectReason").is_none());
    assert!(p.get("tracks").is_none());
    assert_eq!(
        p["permission"],
        json!({"canSubscribe": true, "canPublish": true, "canPublishData": true,
               "canPublishSources": ["CAMERA", "MICROPHONE"]})
    );
    let ev = hits[1].event();
    assert_eq!(ev.event, "participant_joined");
    assert!((ev.created_at - now()).abs() <= 5);
    t.stop().await;
}

#[tokio::test]
async fn track_events_carry_the_track() {
    let t = TestSim::start().await;
    let sid = t.join(&token("alice", &grant("room-t"))).await;
    let (status, body) = t
        .post(
            "/sim/publish",
            json!({"room": "room-t", "identity": "alice", "source": "microphone"}),
        )
        .await;
    assert_eq!(status, 200);
    let track_sid = body["sid"].as_str().unwrap().to_owned();
    assert!(track_sid.starts_with("TR_"));
    let (status, _) = t
        .post(
            "/sim/unpublish",
            json!({"room": "room-t", "identity": "alice", "trackSid": track_sid}),
        )
        .await;
    assert_eq!(status, 200);
    t.settle().await;
    let hits = t.hits();
    let published = hits[2].json();
    assert_eq!(published["event"], "track_published");
    assert_eq!(published["participant"]["sid"], sid);
    assert_eq!(published["track"]["sid"], track_sid);
    assert_eq!(published["track"]["source"], "MICROPHONE");
    assert!(
        published["track"].get("type").is_none(),
        "AUDIO is the zero value"
    );
    let unpublished = hits[3].event();
    assert_eq!(unpublished.event, "track_unpublished");
    let track = unpublished.track.unwrap();
    assert_eq!(
        (track.r#type.as_str(), track.source.as_str()),
        ("AUDIO", "MICROPHONE")
    );
    t.stop().await;
}

#[tokio::test]
async fn retries_5xx_with_the_same_id_but_not_4xx() {
    let t = TestSim::start().await;
    t.respond_with(&[503, 500]);
    t.join(&token("alice", &grant("room-r"))).await;
    t.settle().await;
    let ids: Vec<_> = t.events().into_iter().map(|e| (e.event, e.id)).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_eq!(ids[0].0, "room_started");
    assert_eq!(
        ids[3].0, "participant_joined",
        "order kept behind the retries"
    );

    t.respond_with(&[400]);
    t.post("/sim/leave", json!({"room": "room-r", "identity": "alice"}))
        .await;
    t.settle().await;
    assert_eq!(t.hits().len(), 5, "a 4xx is not retried");
    t.stop().await;
}
