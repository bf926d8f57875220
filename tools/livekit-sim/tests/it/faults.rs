use std::time::{Duration, Instant};

use livekit::{LiveKitRooms, RoomError, RoomService};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn drop_next_drops_only_matching_webhooks() {
    let t = TestSim::start().await;
    t.post(
        "/sim/faults",
        json!({"dropNext": 1, "event": "participant_left"}),
    )
    .await;
    let a = t.join(&token("alice", &grant("room-f"))).await;
    let b = t.join(&token("bob", &grant("room-f"))).await;
    let who = |id: &str| json!({"room": "room-f", "identity": id});
    t.post("/sim/leave", who("alice")).await;
    t.post("/sim/leave", who("bob")).await;
    t.settle().await;
    assert_eq!(
        t.names(),
        [
            "room_started".to_owned(),
            format!("participant_joined:{a}"),
            format!("participant_joined:{b}"),
            format!("participant_left:{b}:CLIENT_INITIATED"),
        ]
    );
    t.stop().await;
}

#[tokio::test]
async fn duplicate_next_sends_twice_with_the_same_id() {
    let t = TestSim::start().await;
    let (_, faults) = t.post("/sim/faults", json!({"duplicateNext": 1})).await;
    assert_eq!(faults["duplicateNext"], 1);
    t.join(&token("alice", &grant("room-g"))).await;
    t.settle().await;
    let events = t.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0], events[1], "same body, same id");
    assert_eq!(events[0].event, "room_started");
    assert_eq!(events[2].event, "participant_joined");
    t.stop().await;
}

#[tokio::test]
async fn reset_clears_faults() {
    let t = TestSim::start().await;
    t.post(
        "/sim/faults",
        json!({"dropNext": 10, "failNextApiCalls": 3}),
    )
    .await;
    let (s, faults) = t.post("/sim/reset", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(faults["dropNext"], 0);
    assert_eq!(faults["failNextApiCalls"], 0);
    assert_eq!(faults["delayDuplicateIdentityLeave"], true);
    t.join(&token("alice", &grant("room-h"))).await;
    t.settle().await;
    assert_eq!(t.hits().len(), 2);
    t.stop().await;
}

#[tokio::test]
async fn api_failures_and_delays() {
    let t = TestSim::start().await;
    let rooms = LiveKitRooms::with_timeout(t.sim.base_url(), &creds(), Duration::from_millis(400));
    t.post(
        "/sim/faults",
        json!({"failNextApiCalls": 2, "code": "unavailable"}),
    )
    .await;
    assert!(matches!(
        rooms.list_rooms(&[]).await,
        Err(RoomError::Unavailable(_))
    ));
    assert!(matches!(
        rooms.create_room("x", 0, 0, 0).await,
        Err(RoomError::Unavailable(_))
    ));
    assert_eq!(rooms.list_rooms(&[]).await, Ok(vec![]));

    t.post(
        "/sim/faults",
        json!({"failNextApiCalls": 1, "code": "permission_denied"}),
    )
    .await;
    assert!(matches!(
        rooms.list_rooms(&[]).await,
        Err(RoomError::Other(_))
    ));

    t.post("/sim/faults", json!({"apiDelayMs": 150})).await;
    let started = Instant::now();
    assert!(rooms.list_rooms(&[]).await.is_ok());
    assert!(started.elapsed() >= Duration::from_millis(150));
    t.post("/sim/faults", json!({"apiDelayMs": 600})).await;
    assert!(matches!(
        rooms.list_rooms(&[]).await,
        Err(RoomError::Unavailable(_))
    ));

    let calls = t.get("/sim/calls?method=ListRooms").await;
    let codes: Vec<_> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].clone())
        .collect();
    assert_eq!(
        codes[..4],
        [
            json!("unavailable"),
            json!(null),
            json!("permission_denied"),
            json!(null)
        ]
    );
    t.stop().await;
}
