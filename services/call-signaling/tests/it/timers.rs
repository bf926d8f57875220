//! The deadlines: each fires once, and one the call moved past changes nothing.

use std::time::Duration;

use serde_json::json;

use crate::{Options, stack_with};

fn short() -> Options {
    let mut o = Options::default();
    o.timings.push_timeout = Duration::from_secs(1);
    o.timings.ring_timeout = Duration::from_secs(1);
    o.timings.join_timeout = Duration::from_secs(1);
    o.timings.max_duration = Duration::from_secs(1);
    o
}

async fn fired(s: &crate::Stack, kind: &str) -> i64 {
    s.count(
        "SELECT count(*) FROM deadlines WHERE kind = $1 AND fired_at IS NOT NULL",
        &[&kind],
    )
    .await
}

#[tokio::test]
async fn no_push_result_fails_and_no_answer_is_missed() {
    let s = stack_with(short()).await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let silent = s.start_call(a, b).await;
    let call = s.wait_status(a, silent, "failed").await;
    assert_eq!(call["endedReason"], json!("push_timeout"));
    let room = call["roomName"].as_str().unwrap().to_owned();

    let unanswered = s.ringing_call(a, b).await;
    let call = s.wait_status(b, unanswered, "missed").await;
    assert_eq!(call["endedReason"], json!("no_answer"));
    assert_eq!(s.events(unanswered, "missed").await, 1);
    // A late answer is refused.
    let (status, body) = s.act(b, unanswered, "accept").await;
    crate::assert_error(status, &body, 409, "INVALID_TRANSITION");
    assert!(
        !s.sim_rooms().await.contains(&room),
        "the failed call's room is gone"
    );
    assert_eq!(s.count("SELECT count(*) FROM call_busy", &[]).await, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn deadlines_made_moot_are_cancelled_or_fire_without_effect() {
    let mut o = short();
    o.timings.push_timeout = Duration::from_secs(2);
    o.timings.ring_timeout = Duration::from_secs(2);
    let s = stack_with(o).await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    // Answered in time: the ring timeout is cancelled, and the join timeout fails the call
    // nobody joined.
    let id = s.ringing_call(a, b).await;
    s.act(b, id, "accept").await;
    let call = s.wait_status(a, id, "failed").await;
    assert_eq!(call["endedReason"], json!("join_timeout"));
    assert_eq!(fired(&s, "call.ring_timeout").await, 0);
    assert_eq!(fired(&s, "call.push_timeout").await, 0);
    assert_eq!(
        s.count(
            "SELECT count(*) FROM deadlines WHERE subject_id = $1 AND fired_at IS NULL AND cancelled_at IS NULL",
            &[&id]
        )
        .await,
        0,
        "nothing left pending for a finished call"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_live_call_ends_at_its_maximum_duration() {
    let mut o = short();
    o.timings.join_timeout = Duration::from_secs(30);
    o.timings.max_duration = Duration::from_secs(1);
    let s = stack_with(o).await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.accepted_call(a, b).await;
    s.join(a, id).await;
    s.join(b, id).await;
    let call = s.wait_status(a, id, "ended").await;
    assert_eq!(call["endedReason"], json!("max_duration"));
    assert!(call["liveAt"].is_string(), "it was live first: {call}");
    assert_eq!(fired(&s, "call.max_duration").await, 1);
    assert_eq!(
        fired(&s, "call.join_timeout").await,
        0,
        "cancelled when it went live"
    );
    assert!(
        !s.sim_rooms()
            .await
            .contains(&call["roomName"].as_str().unwrap().to_owned())
    );
    s.shutdown().await;
}
