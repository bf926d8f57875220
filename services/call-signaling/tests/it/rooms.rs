//! Call rooms follow LiveKit (through livekit-sim → webhook-ingest → NATS): both parties in
//! → live; leaving on purpose ends; a drop fails after the grace unless the party is back.

use std::time::Duration;

use serde_json::json;

use crate::stack;

#[tokio::test]
async fn both_parties_in_the_room_make_it_live_and_leaving_ends_it() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.ringing_call(a, b).await;
    // The caller may be in the room first, while it rings; the callee may not.
    s.join(a, id).await;
    let (status, body) = s.call_token(b, id).await;
    crate::assert_error(status, &body, 409, "INVALID_TRANSITION");
    s.act(b, id, "accept").await;
    s.join(b, id).await;
    let call = s.wait_status(a, id, "live").await;
    assert!(call["liveAt"].is_string());
    let room = call["roomName"].as_str().unwrap().to_owned();
    s.sim("leave", &room, b).await;
    let call = s.wait_status(a, id, "ended").await;
    assert_eq!(call["endedReason"], json!("callee_left"));
    testkit::eventually(
        Duration::from_secs(10),
        "the room to be deleted",
        || async { (!s.sim_rooms().await.contains(&room)).then_some(()) },
    )
    .await;
    assert_eq!(s.events(id, "live").await, 1);
    assert_eq!(s.events(id, "ended").await, 1);
    s.shutdown().await;
}

#[tokio::test]
async fn a_dropped_party_fails_the_call_after_the_grace() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.accepted_call(a, b).await;
    s.join(a, id).await;
    s.join(b, id).await;
    let call = s.wait_status(a, id, "live").await;
    let room = call["roomName"].as_str().unwrap().to_owned();
    s.sim("drop", &room, a).await;
    let call = s.wait_status(b, id, "failed").await;
    assert_eq!(call["endedReason"], json!("network"));
    assert_eq!(s.events(id, "failed").await, 1);
    s.shutdown().await;
}

#[tokio::test]
async fn a_dropped_party_back_within_the_grace_keeps_the_call() {
    let mut o = crate::Options::default();
    o.timings.party_grace = Duration::from_secs(4);
    let s = crate::stack_with(o).await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.accepted_call(a, b).await;
    s.join(a, id).await;
    s.join(b, id).await;
    let call = s.wait_status(a, id, "live").await;
    let room = call["roomName"].as_str().unwrap().to_owned();
    s.sim("drop", &room, a).await;
    testkit::eventually(Duration::from_secs(10), "the grace to start", || async {
        let n = s
            .count(
                "SELECT count(*) FROM deadlines WHERE kind = 'call.party_grace' AND subject_id = $1",
                &[&id],
            )
            .await;
        (n == 1).then_some(())
    })
    .await;
    s.join(a, id).await;
    testkit::eventually(Duration::from_secs(10), "the grace to be cancelled", || async {
        let n = s
            .count(
                "SELECT count(*) FROM deadlines WHERE kind = 'call.party_grace' AND subject_id = $1 AND cancelled_at IS NOT NULL",
                &[&id],
            )
            .await;
        (n == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        s.call(a, id).await["status"],
        json!("live"),
        "still live after the grace"
    );
    // Both hang up at once: one of them ends it, the other is refused.
    let (x, y) = tokio::join!(s.act(a, id, "end"), s.act(b, id, "end"));
    let mut statuses = [x.0.as_u16(), y.0.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{x:?} {y:?}");
    assert_eq!(s.events(id, "ended").await, 1);
    s.shutdown().await;
}

#[tokio::test]
async fn both_parties_gone_ends_the_call() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.accepted_call(a, b).await;
    s.join(a, id).await;
    s.join(b, id).await;
    let call = s.wait_status(a, id, "live").await;
    let room = call["roomName"].as_str().unwrap().to_owned();
    s.sim("drop", &room, a).await;
    s.sim("drop", &room, b).await;
    let call = testkit::eventually(Duration::from_secs(20), "the call to be over", || async {
        let c = s.call(a, id).await;
        (c["status"] != json!("live")).then_some(c)
    })
    .await;
    assert_eq!(call["status"], json!("ended"), "{call}");
    assert_eq!(call["endedReason"], json!("both_left"));
    s.shutdown().await;
}

/// LiveKit lost the leave of a live call's party: the periodic reconciliation finds the
/// party gone and the call takes the path a delivered leave would have (grace, then failed).
#[tokio::test]
async fn a_lost_leave_is_found_by_the_reconciliation() {
    let mut o = crate::Options::default();
    o.timings.reconcile_every = Duration::from_secs(1);
    let s = crate::stack_with(o).await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.accepted_call(a, b).await;
    s.join(a, id).await;
    s.join(b, id).await;
    let call = s.wait_status(a, id, "live").await;
    let room = call["roomName"].as_str().unwrap().to_owned();
    faults(&s, json!({"dropNext": 2, "event": "participant_left"})).await;
    s.sim("drop", &room, a).await;
    s.sim("drop", &room, b).await;
    let call = s.wait_status(a, id, "ended").await;
    assert_eq!(call["endedReason"], json!("both_left"), "{call}");
    assert_eq!(
        s.count(
            "SELECT count(*) FROM livekit_participations WHERE room_name = $1 AND left_reason = 'RECONCILED'",
            &[&room]
        )
        .await,
        2,
        "both leaves came from the reconciliation"
    );
    s.shutdown().await;
}

async fn faults(s: &crate::Stack, faults: serde_json::Value) {
    let res = s
        .http
        .post(format!("{}/sim/faults", s.sim.base_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
}

/// Empty, the call's room outlives the call's deadlines by a margin, so that our join
/// timeout decides even when it fires late: the fault suite saw LiveKit finish the room of
/// an accepted call first while PostgreSQL restarted, and the call ended `room_finished`
/// instead of failing `join_timeout`.
#[tokio::test]
async fn the_call_room_outlives_the_deadlines_so_that_they_decide() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.start_call(a, b).await;
    let calls: serde_json::Value =
        reqwest::get(format!("{}/sim/calls?method=CreateRoom", s.sim.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let created = calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["room"]
                .as_str()
                .unwrap_or_default()
                .contains(&id.to_string())
        })
        .expect("the call room's CreateRoom");
    let empty = &created["body"]["emptyTimeout"];
    let empty = empty
        .as_u64()
        .or_else(|| empty.as_str().and_then(|v| v.parse().ok()))
        .expect("emptyTimeout");
    let t = crate::Options::default().timings;
    let deadlines = (t.push_timeout + t.ring_timeout + t.join_timeout).as_secs();
    assert!(
        empty >= deadlines + 30,
        "empty timeout {empty} s, deadlines {deadlines} s"
    );
    s.shutdown().await;
}
