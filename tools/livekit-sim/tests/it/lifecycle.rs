use std::time::{Duration, Instant};

use livekit::{LiveKitRooms, RoomService};
use serde_json::json;

use crate::support::*;

async fn wait_for(t: &TestSim, event: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if t.events().iter().any(|e| e.event == event) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn room_finishes_after_the_departure_timeout() {
    let t = TestSim::start().await; // departure timeout 1 s
    t.join(&token("alice", &grant("room-z"))).await;
    t.post("/sim/leave", json!({"room": "room-z", "identity": "alice"}))
        .await;
    let after = wait_for(&t, "room_finished", Duration::from_secs(3))
        .await
        .expect("room_finished");
    assert!(after >= Duration::from_millis(800), "{after:?}");
    let finished = t.events().pop().unwrap();
    assert_eq!(finished.room.unwrap().name, "room-z");
    assert_eq!(t.get("/sim/rooms").await, json!([]));

    // A room can come back after room_finished.
    t.join(&token("alice", &grant("room-z"))).await;
    t.settle().await;
    let names = t.names();
    assert_eq!(names[names.len() - 2], "room_started");
    t.stop().await;
}

#[tokio::test]
async fn a_join_cancels_the_departure_timer() {
    let t = TestSim::start().await;
    let tok = token("alice", &grant("room-y"));
    t.join(&tok).await;
    t.post("/sim/leave", json!({"room": "room-y", "identity": "alice"}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.join(&tok).await;
    assert_eq!(
        wait_for(&t, "room_finished", Duration::from_millis(1300)).await,
        None
    );
    t.stop().await;
}

#[tokio::test]
async fn a_created_room_nobody_joins_finishes_after_its_empty_timeout() {
    let t = TestSim::start().await;
    let rooms = LiveKitRooms::new(t.sim.base_url(), &creds());
    let room = rooms.create_room("room-empty", 1, 0, 0).await.unwrap();
    assert_eq!(room.empty_timeout, 1);
    assert_eq!(room.departure_timeout, 1, "the sim's default");
    wait_for(&t, "room_finished", Duration::from_secs(3))
        .await
        .expect("room_finished");
    assert_eq!(t.names(), ["room_started", "room_finished"]);
    t.stop().await;
}
