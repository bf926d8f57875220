//! Duplicated and reordered webhooks leave the same state as the ordered stream.
//!
//! One scripted history of a session, written as the signed webhook bodies LiveKit would send,
//! is fed to webhook-ingest in order (each event handled before the next is sent) on one stack,
//! and in shuffled orders with duplicates on fresh stacks. The final session and its
//! participants must be the same whatever the order.

use std::time::Duration;

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use session_manager::lifecycle::Timings;
use uuid::Uuid;

use crate::{Options, Stack, profile_with_id, stack_with};

/// The people of the script: the same ids in every stack's database.
#[derive(Clone)]
struct Cast {
    host: Uuid,
    viewers: Vec<Uuid>,
}

impl Cast {
    fn new() -> Self {
        Cast {
            host: Uuid::new_v4(),
            viewers: (0..5).map(|_| Uuid::new_v4()).collect(),
        }
    }
}

/// One step of the script: a LiveKit event at `base + at` seconds.
#[derive(Clone, Debug)]
enum Step {
    Joined {
        user: Uuid,
        conn: u32,
        at: i64,
    },
    Left {
        user: Uuid,
        conn: u32,
        at: i64,
        reason: &'static str,
    },
    RoomFinished {
        at: i64,
    },
}

/// The history: the host joins, five viewers join, two leave, one viewer reconnects (a new sid
/// joins, then the old sid leaves with `DUPLICATE_IDENTITY`, in the same second as LiveKit
/// does), the host leaves and comes back; with `finish`, everyone leaves and the room finishes
/// after its departure timeout.
fn script(cast: &Cast, finish: bool) -> Vec<Step> {
    let h = cast.host;
    let v = &cast.viewers;
    let mut s = vec![Step::Joined {
        user: h,
        conn: 1,
        at: 0,
    }];
    for (i, viewer) in v.iter().enumerate() {
        s.push(Step::Joined {
            user: *viewer,
            conn: 1,
            at: 1 + i as i64,
        });
    }
    s.extend([
        Step::Left {
            user: v[0],
            conn: 1,
            at: 6,
            reason: "CLIENT_INITIATED",
        },
        Step::Left {
            user: v[1],
            conn: 1,
            at: 7,
            reason: "SIGNAL_CLOSE",
        },
        Step::Joined {
            user: v[2],
            conn: 2,
            at: 8,
        },
        Step::Left {
            user: v[2],
            conn: 1,
            at: 8,
            reason: "DUPLICATE_IDENTITY",
        },
        Step::Left {
            user: h,
            conn: 1,
            at: 10,
            reason: "SIGNAL_CLOSE",
        },
        Step::Joined {
            user: h,
            conn: 2,
            at: 12,
        },
    ]);
    if finish {
        s.extend([
            Step::Left {
                user: v[2],
                conn: 2,
                at: 20,
                reason: "CLIENT_INITIATED",
            },
            Step::Left {
                user: v[3],
                conn: 1,
                at: 21,
                reason: "CLIENT_INITIATED",
            },
            Step::Left {
                user: v[4],
                conn: 1,
                at: 22,
                reason: "CLIENT_INITIATED",
            },
            Step::Left {
                user: h,
                conn: 2,
                at: 23,
                reason: "CLIENT_INITIATED",
            },
            Step::RoomFinished { at: 45 },
        ]);
    }
    s
}

/// The webhook body LiveKit would send for step `n` of a session's room.
fn body(step: &Step, n: usize, room: &str, base: i64) -> Value {
    let room_json =
        json!({"sid": "RM_script", "name": room, "emptyTimeout": 600, "departureTimeout": 90});
    let sid = |user: &Uuid, conn: u32| format!("PA_{}_{conn}", user.simple());
    match step {
        Step::Joined { user, conn, at } => json!({
            "event": "participant_joined",
            "id": format!("EV_script_{n}"),
            "createdAt": (base + at).to_string(),
            "room": room_json,
            "participant": {
                "sid": sid(user, *conn),
                "identity": user.to_string(),
                "name": "someone",
                "state": "ACTIVE",
                "joinedAt": (base + at).to_string(),
            },
        }),
        Step::Left {
            user,
            conn,
            at,
            reason,
        } => json!({
            "event": "participant_left",
            "id": format!("EV_script_{n}"),
            "createdAt": (base + at).to_string(),
            "room": room_json,
            "participant": {
                "sid": sid(user, *conn),
                "identity": user.to_string(),
                "name": "someone",
                "state": "DISCONNECTED",
                "disconnectReason": reason,
            },
        }),
        Step::RoomFinished { at } => json!({
            "event": "room_finished",
            "id": format!("EV_script_{n}"),
            "createdAt": (base + at).to_string(),
            "room": room_json,
        }),
    }
}

/// No deadline or reconciliation interferes: the webhooks alone decide.
fn options() -> Options {
    Options {
        timings: Timings {
            host_grace: Duration::from_secs(600),
            no_show: Duration::from_secs(600),
            max_duration: Duration::from_secs(3600),
            orphan_after: Duration::from_secs(3600),
            reconcile_every: Duration::from_secs(3600),
        },
        session_manager: true,
    }
}

/// A fresh stack with the cast and one created session; returns it with the session id.
async fn prepared(cast: &Cast) -> (Stack, Uuid) {
    let stack = stack_with(options()).await;
    profile_with_id(&stack.db, cast.host, "host", true).await;
    for (i, v) in cast.viewers.iter().enumerate() {
        profile_with_id(&stack.db, *v, &format!("viewer{i}"), false).await;
    }
    let id = stack.public_session(cast.host).await;
    (stack, id)
}

/// What must not depend on the order of delivery.
async fn outcome(stack: &Stack, host: Uuid, id: Uuid, fields: &[&str]) -> Value {
    let s = stack.session(host, id).await;
    let mut session = serde_json::Map::new();
    for f in fields {
        session.insert((*f).to_owned(), s[*f].clone());
    }
    let rows = stack
        .sql()
        .await
        .query(
            "SELECT user_id, role, is_active FROM live_participants WHERE session_id = $1 ORDER BY user_id",
            &[&id],
        )
        .await
        .unwrap();
    let participants: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "user": r.get::<_, Uuid>(0).to_string(),
                "role": r.get::<_, String>(1),
                "active": r.get::<_, bool>(2),
            })
        })
        .collect();
    json!({"session": session, "participants": participants})
}

/// Feeds the script in order, each event handled before the next is sent.
async fn run_ordered(cast: &Cast, steps: &[Step], base: i64, fields: &[&str]) -> Value {
    let (stack, id) = prepared(cast).await;
    let room = format!("live_video_{id}");
    for (n, step) in steps.iter().enumerate() {
        let answer = stack.post_webhook(&body(step, n, &room, base)).await;
        assert_eq!(answer["duplicate"], json!(false), "{answer}");
        stack.wait_webhooks_handled_fast().await;
    }
    stack.wait_webhooks_handled().await;
    let got = outcome(&stack, cast.host, id, fields).await;
    stack.shutdown().await;
    got
}

/// A delivery order: a permutation of the script with some events sent twice (a duplicate
/// may come before or after its original).
fn delivery(steps: usize, rng: &mut StdRng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..steps).collect();
    for n in 0..steps {
        if rng.random_bool(0.4) {
            order.push(n);
        }
    }
    order.shuffle(rng);
    order
}

/// Feeds the script in `stages`: each stage's events (with duplicates) as fast as possible,
/// then waits until they are handled before the next stage.
async fn run_in(
    cast: &Cast,
    steps: &[Step],
    stages: &[Vec<usize>],
    base: i64,
    fields: &[&str],
) -> Value {
    let (stack, id) = prepared(cast).await;
    let room = format!("live_video_{id}");
    for stage in stages {
        for &n in stage {
            stack.post_webhook(&body(&steps[n], n, &room, base)).await;
        }
        stack.wait_webhooks_handled_fast().await;
    }
    // Every scripted event is stored once, and all of them are handled.
    testkit::eventually(
        Duration::from_secs(10),
        "every scripted event stored",
        || async {
            (stack
                .count(
                    "SELECT count(*) FROM webhook_events WHERE id LIKE 'EV_script_%'",
                    &[],
                )
                .await
                == steps.len() as i64)
                .then_some(())
        },
    )
    .await;
    stack.wait_webhooks_handled().await;
    let got = outcome(&stack, cast.host, id, fields).await;
    if std::env::var("DUMP").is_ok() {
        let rows = stack.db.sql().await.query("SELECT identity, extract(epoch from joined_at)::bigint, extract(epoch from left_at)::bigint, left_reason FROM livekit_participations ORDER BY 2", &[]).await.unwrap();
        for r in rows {
            eprintln!(
                "ROW {:?} {:?} {:?} {:?}",
                r.get::<_, String>(0),
                r.get::<_, Option<i64>>(1).map(|v| v - base),
                r.get::<_, Option<i64>>(2).map(|v| v - base),
                r.get::<_, Option<String>>(3)
            );
        }
        eprintln!("GOT {got}");
    }
    stack.shutdown().await;
    got
}

fn describe(steps: &[Step], order: &[usize]) -> String {
    order
        .iter()
        .map(|&n| format!("{n}:{:?}", steps[n]))
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Runs the ordered stream and the permutations; returns the reference and every mismatch.
async fn compare(finish: bool, fields: &[&str], expected: impl Fn(&Cast, i64) -> Value) {
    let cast = Cast::new();
    let steps = script(&cast, finish);
    // LiveKit's clock: ahead of the session's creation, the same for every stack.
    let base = chrono::Utc::now().timestamp() + 300;
    let reference = run_ordered(&cast, &steps, base, fields).await;
    assert_eq!(
        reference,
        expected(&cast, base),
        "the ordered stream itself ends as the script says"
    );

    let seed: u64 = rand::rng().random();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut orders: Vec<Vec<usize>> = vec![(0..steps.len()).rev().collect()];
    for _ in 0..4 {
        orders.push(delivery(steps.len(), &mut rng));
    }
    let results: Vec<(Vec<usize>, Value)> = futures_util::stream::iter(orders)
        .map(|order| {
            let (cast, steps) = (&cast, &steps);
            async move {
                let got = run_in(cast, steps, std::slice::from_ref(&order), base, fields).await;
                (order, got)
            }
        })
        .buffered(1)
        .collect()
        .await;
    let mismatches: Vec<String> = results
        .iter()
        .filter(|(_, got)| *got != reference)
        .map(|(order, got)| {
            format!(
                "delivered as\n  {}\ngot      {got}",
                describe(&steps, order)
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "seed {seed}: {} of {} orders differ from the ordered stream\nexpected {reference}\n{}",
        mismatches.len(),
        results.len(),
        mismatches.join("\n")
    );
}

impl Stack {
    /// Like `wait_webhooks_handled`, without the quiet period (the ordered feed).
    async fn wait_webhooks_handled_fast(&self) {
        testkit::eventually(Duration::from_secs(10), "the event handled", || async {
            let stored = self.count("SELECT count(*) FROM webhook_events", &[]).await;
            (self.processed_livekit_events().await == stored).then_some(())
        })
        .await
    }
}

const ALL_FIELDS: [&str; 7] = [
    "status",
    "endReason",
    "peakViewers",
    "viewerCount",
    "totalDurationSeconds",
    "startedAt",
    "endedAt",
];

fn rfc3339(seconds: i64) -> Value {
    json!(
        chrono::DateTime::from_timestamp(seconds, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

#[tokio::test]
async fn duplicated_and_reordered_webhooks_leave_the_same_state_as_the_ordered_stream() {
    compare(true, &ALL_FIELDS, |cast, base| {
        let mut participants: Vec<(Uuid, &str)> = vec![(cast.host, "host")];
        participants.extend(cast.viewers.iter().map(|v| (*v, "viewer")));
        participants.sort();
        json!({
            "session": {
                "status": "ended",
                "endReason": "room_finished",
                "peakViewers": 5,
                "viewerCount": 0,
                "totalDurationSeconds": 45,
                "startedAt": rfc3339(base),
                "endedAt": rfc3339(base + 45),
            },
            "participants": participants.iter().map(|(u, role)| json!({"user": u.to_string(), "role": role, "active": false})).collect::<Vec<_>>(),
        })
    })
    .await;
}

#[tokio::test]
async fn without_room_finished_presence_and_counts_do_not_depend_on_the_order() {
    compare(
        false,
        &["status", "viewerCount", "peakViewers"],
        |cast, _| {
            let v = &cast.viewers;
            let mut participants: Vec<(Uuid, &str, bool)> = vec![
                (cast.host, "host", true),
                (v[0], "viewer", false),
                (v[1], "viewer", false),
                (v[2], "viewer", true),
                (v[3], "viewer", true),
                (v[4], "viewer", true),
            ];
            participants.sort();
            json!({
                "session": {"status": "live", "viewerCount": 3, "peakViewers": 5},
                "participants": participants.iter().map(|(u, role, active)| json!({"user": u.to_string(), "role": role, "active": active})).collect::<Vec<_>>(),
            })
        },
    )
    .await;
}

/// The host's second connection is reported before its first one: the session started when
/// the host first joined, whatever order LiveKit's webhooks came in.
#[tokio::test]
async fn started_at_is_the_hosts_first_join_whatever_the_order() {
    let cast = Cast::new();
    let steps = script(&cast, false);
    let base = chrono::Utc::now().timestamp() + 300;
    let fields = ["status", "startedAt"];
    let reference = run_ordered(&cast, &steps, base, &fields).await;
    assert_eq!(reference["session"]["startedAt"], rfc3339(base));
    let second_join = steps
        .iter()
        .position(|s| matches!(s, Step::Joined { user, conn: 2, .. } if *user == cast.host))
        .unwrap();
    let rest: Vec<usize> = (0..steps.len()).filter(|&n| n != second_join).collect();
    let got = run_in(&cast, &steps, &[vec![second_join], rest], base, &fields).await;
    assert_eq!(reference, got);
}

/// LiveKit's times are whole seconds: a viewer who joins and leaves within one second has a
/// join and a leave with the same `createdAt`. The session saw the viewer (peak 1); the peak
/// is a high-water mark and must not fall back to 0 when the leave arrives, nor at the end.
#[tokio::test]
async fn a_viewer_who_stays_under_a_second_still_counts_in_the_peak() {
    let cast = Cast::new();
    let (stack, id) = prepared(&cast).await;
    let room = format!("live_video_{id}");
    let base = chrono::Utc::now().timestamp() + 300;
    let viewer = cast.viewers[0];
    let steps = [
        Step::Joined {
            user: cast.host,
            conn: 1,
            at: 0,
        },
        Step::Joined {
            user: viewer,
            conn: 1,
            at: 1,
        },
        Step::Left {
            user: viewer,
            conn: 1,
            at: 1,
            reason: "CLIENT_INITIATED",
        },
    ];
    let mut peaks = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        stack.post_webhook(&body(step, n, &room, base)).await;
        stack.wait_webhooks_handled_fast().await;
        peaks.push(stack.session(cast.host, id).await["peakViewers"].clone());
    }
    assert_eq!(
        peaks,
        vec![json!(0), json!(1), json!(1)],
        "peakViewers after each event"
    );
    stack
        .post_webhook(&body(&Step::RoomFinished { at: 30 }, 9, &room, base))
        .await;
    stack.wait_webhooks_handled().await;
    let s = stack.session(cast.host, id).await;
    assert_eq!(s["status"], json!("ended"));
    assert_eq!(s["peakViewers"], json!(1), "{s}");
}
