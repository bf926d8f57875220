//! Racing requests leave exactly one winner: the call row's lock and the state machine
//! decide, and `call_busy` keeps a user in one active call whatever arrives at once.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::{Options, stack, stack_with};

#[tokio::test]
async fn accept_against_cancel_has_one_winner() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    for _ in 0..10 {
        let id = s.ringing_call(a, b).await;
        let (accept, cancel) = tokio::join!(s.act(b, id, "accept"), s.act(a, id, "cancel"));
        let wins = [&accept, &cancel].iter().filter(|r| r.0 == 200).count();
        assert_eq!(wins, 1, "accept {accept:?} cancel {cancel:?}");
        let loser = if accept.0 == 200 { &cancel } else { &accept };
        crate::assert_error(loser.0, &loser.1, 409, "INVALID_TRANSITION");
        let call = s.call(a, id).await;
        let expected = if accept.0 == 200 {
            "accepted"
        } else {
            "cancelled"
        };
        assert_eq!(call["status"], json!(expected));
        if accept.0 == 200 {
            s.act(a, id, "end").await;
        }
        assert_eq!(
            s.events(id, "accepted").await + s.events(id, "cancelled").await,
            1
        );
    }
    s.shutdown().await;
}

#[tokio::test]
async fn accept_against_the_ring_timeout_has_one_winner() {
    let mut o = Options::default();
    o.timings.ring_timeout = Duration::from_millis(1000);
    let s = stack_with(o).await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let mut outcomes = std::collections::HashMap::new();
    for i in 0..6u64 {
        let id = s.ringing_call(a, b).await;
        // Answer around the moment the timeout is due.
        tokio::time::sleep(Duration::from_millis(850 + 50 * i)).await;
        let (status, _) = s.act(b, id, "accept").await;
        let call = testkit::eventually(Duration::from_secs(10), "the ringing to stop", || async {
            let c = s.call(a, id).await;
            (c["status"] != json!("ringing")).then_some(c)
        })
        .await;
        match call["status"].as_str().unwrap() {
            "accepted" => {
                assert_eq!(status, 200);
                s.act(a, id, "end").await;
            }
            "missed" => assert_eq!(status, 409, "a refused answer for a missed call"),
            other => panic!("unexpected {other}"),
        }
        *outcomes
            .entry(call["status"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        assert_eq!(
            s.events(id, "accepted").await + s.events(id, "missed").await,
            1
        );
    }
    eprintln!("outcomes: {outcomes:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn many_callers_at_once_ring_the_callee_once() {
    let s = stack().await;
    let b = s.user("bob").await;
    let mut callers = Vec::new();
    for i in 0..12 {
        callers.push(s.user(&format!("caller{i}")).await);
    }
    let answers = join_all(callers.iter().map(|&c| s.initiate(c, b, "audio_call"))).await;
    let created: Vec<_> = answers.iter().filter(|(st, _)| *st == 201).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(st, _)| *st != 201) {
        crate::assert_error(*status, body, 409, "BUSY");
    }
    assert_eq!(
        s.count("SELECT count(*) FROM call_busy WHERE user_id = $1", &[&b])
            .await,
        1
    );
    assert_eq!(
        s.count("SELECT count(*) FROM calls WHERE status = 'busy'", &[])
            .await,
        11
    );
    // Two people calling each other at the same moment: one call, no deadlock.
    let x = s.user("x").await;
    let y = s.user("y").await;
    let (xy, yx) = tokio::join!(
        s.initiate(x, y, "video_call"),
        s.initiate(y, x, "video_call")
    );
    let mut statuses = [xy.0.as_u16(), yx.0.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{xy:?} {yx:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn concurrent_ends_and_rejects() {
    let s = stack().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let id = s.accepted_call(a, b).await;
    let answers = join_all((0..6).map(|i| s.act(if i % 2 == 0 { a } else { b }, id, "end"))).await;
    assert_eq!(
        answers.iter().filter(|(st, _)| *st == 200).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(s.events(id, "ended").await, 1);
    let id = s.ringing_call(a, b).await;
    let (reject, accept) = tokio::join!(s.act(b, id, "reject"), s.act(b, id, "accept"));
    assert_eq!(
        [reject.0, accept.0].iter().filter(|st| **st == 200).count(),
        1
    );
    s.shutdown().await;
}
