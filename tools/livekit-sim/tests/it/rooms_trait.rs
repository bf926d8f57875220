//! Our `LiveKitRooms` against the sim.

use std::sync::Arc;

use livekit::{LiveKitRooms, Permission, RoomService};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn livekit_rooms_works_against_the_sim() {
    let t = TestSim::start().await;
    let rooms: Arc<dyn RoomService> = Arc::new(LiveKitRooms::new(t.sim.base_url(), &creds()));

    let room = rooms.create_room("lk", 120, 10, 0).await.unwrap();
    assert_eq!(
        (
            room.name.as_str(),
            room.empty_timeout,
            room.departure_timeout
        ),
        ("lk", 120, 10)
    );
    assert_eq!(
        rooms.list_rooms(&["lk".to_owned()]).await.unwrap(),
        vec![room.clone()]
    );
    assert!(rooms.list_participants("missing").await.unwrap().is_empty());

    let sid = t.join(&token("host", &grant("lk"))).await;
    let (_, cam) = t
        .post(
            "/sim/publish",
            json!({"room": "lk", "identity": "host", "source": "camera"}),
        )
        .await;
    let cam = cam["sid"].as_str().unwrap().to_owned();
    t.post(
        "/sim/publish",
        json!({"room": "lk", "identity": "host", "source": "microphone"}),
    )
    .await;

    let ps = rooms.list_participants("lk").await.unwrap();
    assert_eq!(ps.len(), 1);
    let host = rooms.get_participant("lk", "host").await.unwrap().unwrap();
    assert_eq!(host.sid, sid);
    assert_eq!(host.state, "ACTIVE");
    assert_eq!(
        host.permission.can_publish_sources,
        ["camera", "microphone"]
    );
    let sources: Vec<_> = host.tracks.iter().map(|t| t.source.as_str()).collect();
    assert_eq!(sources, ["camera", "microphone"]);
    assert_eq!(rooms.get_participant("lk", "ghost").await.unwrap(), None);

    rooms
        .mute_published_track("lk", "host", &cam, true)
        .await
        .unwrap();
    let host = rooms.get_participant("lk", "host").await.unwrap().unwrap();
    assert!(host.tracks[0].muted);

    // Read-modify-write: take the camera away, keep the microphone.
    let perm = Permission {
        can_publish_sources: vec!["microphone".into()],
        ..host.permission.clone()
    };
    let updated = rooms
        .update_participant_permission("lk", "host", perm.clone())
        .await
        .unwrap();
    assert_eq!(updated.permission, perm);
    let sources: Vec<_> = updated.tracks.iter().map(|t| t.source.as_str()).collect();
    assert_eq!(sources, ["microphone"]);
    assert!(
        rooms
            .update_participant_permission("lk", "ghost", perm)
            .await
            .is_err()
    );

    rooms.remove_participant("lk", "host").await.unwrap();
    rooms.remove_participant("lk", "host").await.unwrap();
    rooms.delete_room("lk").await.unwrap();
    rooms.delete_room("lk").await.unwrap();
    assert!(rooms.list_rooms(&[]).await.unwrap().is_empty());

    let methods: Vec<_> = t
        .get("/sim/calls")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["method"].as_str().unwrap().to_owned())
        .collect();
    assert!(methods.contains(&"MutePublishedTrack".to_owned()));
    t.stop().await;
}

/// `set_publishing` changes the publish rights only, on LiveKit's replace-everything
/// `UpdateParticipant`: subscribing and data stay; revoking unpublishes at once.
#[tokio::test]
async fn set_publishing_is_a_read_modify_write() {
    let t = TestSim::start().await;
    let rooms = LiveKitRooms::new(t.sim.base_url(), &creds());
    let mut viewer = grant("stage");
    viewer.can_publish = false;
    viewer.can_publish_sources = vec![];
    t.join(&token("guest", &viewer)).await;
    let publish = |source: &str| json!({"room": "stage", "identity": "guest", "source": source});
    assert_eq!(t.post("/sim/publish", publish("camera")).await.0, 403);

    let p = livekit::set_publishing(&rooms, "stage", "guest", &["camera", "microphone"])
        .await
        .unwrap()
        .unwrap();
    assert!(p.permission.can_publish);
    assert!(p.permission.can_subscribe && p.permission.can_publish_data);
    assert_eq!(p.permission.can_publish_sources, ["camera", "microphone"]);
    assert_eq!(t.post("/sim/publish", publish("camera")).await.0, 200);
    assert_eq!(t.post("/sim/publish", publish("microphone")).await.0, 200);
    assert_eq!(t.post("/sim/publish", publish("screen_share")).await.0, 403);

    let p = livekit::set_publishing(&rooms, "stage", "guest", &[])
        .await
        .unwrap()
        .unwrap();
    assert!(!p.permission.can_publish);
    assert!(p.permission.can_subscribe && p.permission.can_publish_data);
    assert!(p.tracks.is_empty(), "revoking unpublishes: {p:?}");
    assert_eq!(t.post("/sim/publish", publish("microphone")).await.0, 403);
    t.settle().await;
    let names = t.names();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("track_unpublished"))
            .count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        livekit::set_publishing(&rooms, "stage", "ghost", &["microphone"]).await,
        Ok(None)
    );
    t.stop().await;
}
