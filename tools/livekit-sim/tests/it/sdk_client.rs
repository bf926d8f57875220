//! The official Rust SDK client (protobuf Twirp) against the sim.

use livekit_api::services::room::{CreateRoomOptions, RoomClient, UpdateParticipantOptions};
use livekit_api::services::{ServerError, ServiceError};
use livekit_protocol as proto;
use serde_json::json;

use crate::support::*;

fn twirp_code(e: &ServiceError) -> &str {
    match e {
        ServiceError::Twirp(ServerError::Twirp(c)) => &c.code,
        other => panic!("not a Twirp error: {other:?}"),
    }
}

#[tokio::test]
async fn room_client_drives_the_sim() {
    let t = TestSim::start().await;
    let client = RoomClient::with_api_key(t.sim.base_url(), KEY, SECRET);

    let opts = |empty, departure| CreateRoomOptions {
        empty_timeout: empty,
        departure_timeout: departure,
        max_participants: 10,
        ..Default::default()
    };
    let room = client.create_room("rc", opts(600, 30)).await.unwrap();
    assert!(room.sid.starts_with("RM_"));
    assert_eq!((room.empty_timeout, room.departure_timeout), (600, 30));
    let again = client.create_room("rc", opts(5, 5)).await.unwrap();
    assert_eq!(again.sid, room.sid);
    assert_eq!(
        (again.empty_timeout, again.departure_timeout),
        (600, 30),
        "an existing room is returned unchanged"
    );
    let listed = client.list_rooms(vec![]).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        client
            .list_rooms(vec!["other".into()])
            .await
            .unwrap()
            .is_empty()
    );

    let alice = t.join(&token("alice", &grant("rc"))).await;
    let bob = t.join(&token("bob", &grant("rc"))).await;
    let publish = |id: &str, source: &str| json!({"room": "rc", "identity": id, "source": source});
    assert_eq!(
        t.post("/sim/publish", publish("alice", "camera")).await.0,
        200
    );
    let (_, mic) = t.post("/sim/publish", publish("bob", "microphone")).await;
    let mic = mic["sid"].as_str().unwrap().to_owned();

    let ps = client.list_participants("rc").await.unwrap();
    let sids: Vec<_> = ps.iter().map(|p| p.sid.clone()).collect();
    assert_eq!(sids, [alice.clone(), bob.clone()]);
    let got = client.get_participant("rc", "alice").await.unwrap();
    assert_eq!(got.tracks.len(), 1);
    assert_eq!(got.tracks[0].source, proto::TrackSource::Camera as i32);
    let err = client.get_participant("rc", "nobody").await.unwrap_err();
    assert_eq!(twirp_code(&err), "not_found");

    // Revoke publishing, keeping the rest (read-modify-write).
    let mut perm = got.permission.clone().unwrap();
    perm.can_publish = false;
    let updated = client
        .update_participant(
            "rc",
            "alice",
            UpdateParticipantOptions {
                permission: Some(perm),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!updated.permission.as_ref().unwrap().can_publish);
    assert!(updated.permission.as_ref().unwrap().can_subscribe);
    assert!(updated.tracks.is_empty(), "revoking publish unpublishes");
    let (status, _) = t.post("/sim/publish", publish("alice", "camera")).await;
    assert_eq!(status, 403);

    let calls = t.get("/sim/calls?method=UpdateParticipant").await;
    assert_eq!(calls.as_array().unwrap().len(), 1);
    assert_eq!(calls[0]["room"], "rc");
    assert_eq!(calls[0]["identity"], "alice");
    assert_eq!(calls[0]["body"]["permission"]["canSubscribe"], true);
    assert!(calls[0]["code"].is_null());

    let track = client
        .mute_published_track("rc", "bob", &mic, true)
        .await
        .unwrap();
    assert!(track.muted);

    client.remove_participant("rc", "bob").await.unwrap();
    let err = client.remove_participant("rc", "bob").await.unwrap_err();
    assert_eq!(twirp_code(&err), "not_found");
    client.delete_room("rc").await.unwrap();
    assert!(client.list_rooms(vec![]).await.unwrap().is_empty());

    t.settle().await;
    let names = t.names();
    assert_eq!(
        names,
        [
            "room_started".to_owned(),
            format!("participant_joined:{alice}"),
            format!("participant_joined:{bob}"),
            format!("track_published:{alice}"),
            format!("track_published:{bob}"),
            format!("track_unpublished:{alice}"),
            format!("track_unpublished:{bob}"),
            format!("participant_left:{bob}:PARTICIPANT_REMOVED"),
            format!("participant_left:{alice}:ROOM_DELETED"),
            "room_finished".to_owned(),
        ]
    );
    t.stop().await;
}

#[tokio::test]
async fn a_token_without_room_admin_is_refused() {
    let t = TestSim::start().await;
    t.join(&token("alice", &grant("adm"))).await;
    // A participant's own join token: roomJoin but no roomAdmin.
    let client = RoomClient::with_token(t.sim.base_url(), &token("alice", &grant("adm")));
    let err = client.list_participants("adm").await.unwrap_err();
    assert_eq!(twirp_code(&err), "unauthenticated");
    let err = client.remove_participant("adm", "alice").await.unwrap_err();
    assert_eq!(twirp_code(&err), "unauthenticated");

    // roomAdmin, but of another room.
    let other = admin_token(livekit_api::access_token::VideoGrants {
        room_admin: true,
        room: "elsewhere".into(),
        ..Default::default()
    });
    let client = RoomClient::with_token(t.sim.base_url(), &other);
    let err = client.get_participant("adm", "alice").await.unwrap_err();
    assert_eq!(twirp_code(&err), "unauthenticated");
    // roomList is not roomCreate.
    let lister = admin_token(livekit_api::access_token::VideoGrants {
        room_list: true,
        ..Default::default()
    });
    let client = RoomClient::with_token(t.sim.base_url(), &lister);
    assert_eq!(client.list_rooms(vec![]).await.unwrap().len(), 1);
    let err = client.delete_room("adm").await.unwrap_err();
    assert_eq!(twirp_code(&err), "unauthenticated");

    let calls = t.get("/sim/calls").await;
    assert!(calls.as_array().unwrap().len() >= 5);
    t.settle().await;
    assert_eq!(t.hits().len(), 2, "nothing happened to the room");
    t.stop().await;
}
