//! Bad events: undecodable or meaningless push results and LiveKit events for rooms that
//! are not ours change nothing, and the consumers go on with the next event.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::stack;

#[tokio::test]
async fn bad_push_results_change_nothing_and_the_next_one_works() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.start_call(a, b).await;
    let mut conn = s.db.conn().await;
    // Not a call id; another purpose; an unknown call; an undecodable payload.
    let bad = [
        bus::proto::PushResult {
            user_id: b.to_string(),
            ref_id: "not-a-uuid".into(),
            purpose: "incoming_call".into(),
            delivered: true,
            devices: 1,
            error: String::new(),
        },
        bus::proto::PushResult {
            user_id: b.to_string(),
            ref_id: id.to_string(),
            purpose: "missed_call".into(),
            delivered: false,
            devices: 1,
            error: String::new(),
        },
        bus::proto::PushResult {
            user_id: b.to_string(),
            ref_id: Uuid::new_v4().to_string(),
            purpose: "incoming_call".into(),
            delivered: true,
            devices: 1,
            error: String::new(),
        },
    ];
    for p in &bad {
        let e = bus::Event::new(bus::Family::Notify, "push_result", id, p);
        bus::outbox::enqueue(&mut conn, &s.subjects, &e)
            .await
            .unwrap();
    }
    let mut garbage = bus::Event::new(bus::Family::Notify, "push_result", id, &bad[0]);
    garbage.payload = vec![0xff, 0xff, 0xff];
    bus::outbox::enqueue(&mut conn, &s.subjects, &garbage)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.call(a, id).await["status"],
        json!("initiated"),
        "none of them moved the call"
    );
    s.push_result(id, b, true, 1, "").await;
    s.wait_status(a, id, "ringing").await;
    s.shutdown().await;
}

#[tokio::test]
async fn livekit_events_of_strangers_and_other_rooms_change_nothing() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.accepted_call(a, b).await;
    let room = s.call(a, id).await["roomName"].as_str().unwrap().to_owned();
    let creds = livekit::Credentials::new(testkit::LIVEKIT_KEY, testkit::LIVEKIT_SECRET);
    let post = |event: serde_json::Value| {
        let s = &s;
        let creds = &creds;
        async move {
            let bytes = serde_json::to_vec(&event).unwrap();
            let res = s
                .http
                .post(format!("{}/webhooks/livekit", s.ingest))
                .header("content-type", "application/webhook+json")
                .header("authorization", livekit::sign_webhook(creds, &bytes))
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    };
    let now = chrono::Utc::now().timestamp().to_string();
    // A stranger in the call room; the parties' joins in a room with an unknown call id.
    post(
        json!({"event": "participant_joined", "id": "EV_1", "createdAt": now,
        "room": {"name": room, "sid": "RM_1"},
        "participant": {"sid": "PA_x", "identity": Uuid::new_v4().to_string()}}),
    )
    .await;
    let fake = format!("call_video_{}_{}", Uuid::new_v4(), now);
    for (n, who) in [a, b].iter().enumerate() {
        post(
            json!({"event": "participant_joined", "id": format!("EV_f{n}"), "createdAt": now,
            "room": {"name": fake, "sid": "RM_2"},
            "participant": {"sid": format!("PA_f{n}"), "identity": who.to_string()}}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.call(a, id).await["status"], json!("accepted"));
    s.shutdown().await;
}
