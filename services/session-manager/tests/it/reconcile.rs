//! A lost `participant_left`, `participant_joined` or `room_finished` is repaired by the
//! periodic reconciliation with LiveKit, and a live session whose room is empty in LiveKit
//! ends as `orphaned_cleanup`. The no-show deadline, too, looks at LiveKit's record and
//! asks LiveKit before it ends a session whose host's join it never saw.
//!
//! The reconciliation runs every second (`reconcile_every`). While a test sets its scene
//! (participants joining) the pending reconciliation deadline is pushed an hour away, and it
//! is made due again once the webhook is lost: a pass that overlaps a join can close the
//! joining connection (see `a_join_during_a_reconciliation_pass_is_not_closed`), which would
//! make the setup itself flaky.

use std::time::Duration;

use livekit::RoomService;
use serde_json::json;
use session_manager::lifecycle::Timings;
use uuid::Uuid;

use crate::{Options, Stack, stack_with};

fn options(orphan_after: Duration) -> Options {
    Options {
        timings: Timings {
            // The grace never decides here: the reconciliation does.
            host_grace: Duration::from_secs(600),
            no_show: Duration::from_secs(600),
            max_duration: Duration::from_secs(3600),
            orphan_after,
            reconcile_every: Duration::from_secs(1),
        },
        session_manager: true,
    }
}

const PENDING_RECONCILE: &str =
    "kind = 'session.reconcile' AND fired_at IS NULL AND cancelled_at IS NULL";

impl Stack {
    /// Holds the periodic reconciliation: the pending deadline is pushed an hour away (the
    /// scheduler keeps one pending deadline, so none other is added). A pass being fired
    /// holds its row; the update waits for it, and is repeated until it held one.
    async fn pause_reconciliation(&self) {
        testkit::eventually(Duration::from_secs(10), "the reconciliation paused", || async {
            let n = self
                .sql()
                .await
                .execute(
                    &format!(
                        "UPDATE deadlines SET due_at = now() + interval '1 hour' WHERE {PENDING_RECONCILE}"
                    ),
                    &[],
                )
                .await
                .unwrap();
            (n == 1).then_some(())
        })
        .await;
    }

    /// Lets the reconciliation run again, at once and then every second.
    async fn resume_reconciliation(&self) {
        let n = self
            .sql()
            .await
            .execute(
                &format!("UPDATE deadlines SET due_at = now() WHERE {PENDING_RECONCILE}"),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(n, 1, "one pending reconciliation");
    }

    async fn reconciliations_fired(&self) -> i64 {
        self.count(
            "SELECT count(*) FROM deadlines WHERE kind = 'session.reconcile' AND fired_at IS NOT NULL",
            &[],
        )
        .await
    }

    async fn is_active(&self, session: Uuid, user: Uuid) -> bool {
        self.count(
            "SELECT count(*) FROM live_participants WHERE session_id = $1 AND user_id = $2 AND is_active",
            &[&session, &user],
        )
        .await
            == 1
    }

    async fn webhooks_stored(&self, event: &str, identity: &str) -> i64 {
        self.count(
            "SELECT count(*) FROM webhook_events WHERE event = $1 AND coalesce(identity, '') = $2",
            &[&event, &identity],
        )
        .await
    }

    /// Waits until the sim delivered its webhooks and session-manager handled them.
    async fn settle(&self) {
        assert!(self.sim.wait_webhooks_sent(Duration::from_secs(10)).await);
        self.wait_webhooks_handled().await;
    }
}

/// A live session with its host and one viewer in the room.
async fn scene(stack: &Stack) -> (Uuid, Uuid, Uuid, String) {
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let viewer = testkit::profile(&stack.db, "viewer", false, None).await;
    stack.pause_reconciliation().await;
    let id = stack.live_session(creator, "video_live").await;
    stack.join(&stack.token(viewer, id).await).await;
    stack
        .wait_session(creator, id, "one viewer", |s| s["viewerCount"] == json!(1))
        .await;
    (creator, viewer, id, format!("live_video_{id}"))
}

#[tokio::test]
async fn a_lost_participant_left_is_repaired_by_the_reconciliation() {
    let stack = stack_with(options(Duration::from_secs(1800))).await;
    let (creator, viewer, id, room) = scene(&stack).await;

    stack
        .faults(json!({"dropNext": 1, "event": "participant_left"}))
        .await;
    stack.sim("leave", &room, viewer).await;
    stack.settle().await;
    // The leave is lost: nothing arrived, we still count the viewer.
    assert_eq!(
        stack
            .webhooks_stored("participant_left", &viewer.to_string())
            .await,
        0
    );
    assert_eq!(stack.session(creator, id).await["viewerCount"], json!(1));
    assert!(stack.is_active(id, viewer).await);

    let before = stack.reconciliations_fired().await;
    stack.resume_reconciliation().await;
    let s = stack
        .wait_session(creator, id, "the viewer's leave repaired", |s| {
            s["viewerCount"] == json!(0)
        })
        .await;
    assert_eq!(s["status"], json!("live"), "{s}");
    assert_eq!(s["peakViewers"], json!(1), "{s}");
    assert!(!stack.is_active(id, viewer).await);
    assert!(
        stack.is_active(id, creator).await,
        "the host is still there"
    );
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM livekit_participations WHERE identity = $1 AND left_reason = 'RECONCILED' AND left_at IS NOT NULL",
                &[&viewer.to_string()]
            )
            .await,
        1
    );
    assert!(stack.reconciliations_fired().await > before);
    // The periodic passes that follow change nothing more.
    let passes = stack.reconciliations_fired().await;
    testkit::eventually(Duration::from_secs(10), "two more passes", || async {
        (stack.reconciliations_fired().await >= passes + 2).then_some(())
    })
    .await;
    let again = stack.session(creator, id).await;
    assert_eq!(again["viewerCount"], json!(0));
    assert_eq!(again["status"], json!("live"));
}

#[tokio::test]
async fn a_lost_participant_joined_is_repaired_by_the_reconciliation() {
    let stack = stack_with(options(Duration::from_secs(1800))).await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let viewer = testkit::profile(&stack.db, "viewer", false, None).await;
    stack.pause_reconciliation().await;
    let id = stack.live_session(creator, "video_live").await;

    stack
        .faults(json!({"dropNext": 1, "event": "participant_joined"}))
        .await;
    stack.join(&stack.token(viewer, id).await).await;
    stack.settle().await;
    assert_eq!(
        stack
            .webhooks_stored("participant_joined", &viewer.to_string())
            .await,
        0,
        "the join is lost"
    );
    assert_eq!(stack.session(creator, id).await["viewerCount"], json!(0));
    assert!(!stack.is_active(id, viewer).await);

    stack.resume_reconciliation().await;
    let s = stack
        .wait_session(creator, id, "the viewer's join repaired", |s| {
            s["viewerCount"] == json!(1)
        })
        .await;
    assert_eq!(s["status"], json!("live"), "{s}");
    assert_eq!(s["peakViewers"], json!(1), "{s}");
    assert!(stack.is_active(id, viewer).await);
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM live_participants WHERE session_id = $1 AND user_id = $2 AND role = 'viewer'",
                &[&id, &viewer]
            )
            .await,
        1
    );

    // And when the viewer leaves for real, the webhook is applied as usual.
    stack
        .sim("leave", &format!("live_video_{id}"), viewer)
        .await;
    stack
        .wait_session(creator, id, "the viewer gone", |s| {
            s["viewerCount"] == json!(0)
        })
        .await;
}

#[tokio::test]
async fn a_lost_room_finished_is_repaired_by_the_reconciliation() {
    let stack = stack_with(options(Duration::from_secs(1800))).await;
    let (creator, viewer, id, room) = scene(&stack).await;

    // LiveKit's event times are whole seconds: let the viewer's stay cross one, so the
    // peak is not subject to `ordering::a_viewer_who_stays_under_a_second_still_counts_in_the_peak`.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stack
        .faults(json!({"dropNext": 1, "event": "room_finished"}))
        .await;
    // LiveKit closes the room (an operator deleted it): everyone leaves with ROOM_DELETED,
    // then room_finished, which is lost.
    stack.rooms().delete_room(&room).await.unwrap();
    stack.settle().await;
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM webhook_events WHERE event = 'room_finished' AND room_name = $1",
                &[&room]
            )
            .await,
        0,
        "room_finished is lost"
    );
    let s = stack.session(creator, id).await;
    assert_eq!(
        s["status"],
        json!("host_disconnected"),
        "the host's leave arrived, the end did not: {s}"
    );
    assert!(!stack.is_active(id, viewer).await);

    stack.resume_reconciliation().await;
    let s = stack
        .wait_session(
            creator,
            id,
            "the session ended by the reconciliation",
            |s| s["status"] == json!("ended"),
        )
        .await;
    assert_eq!(s["endReason"], json!("room_finished"), "{s}");
    assert_eq!(s["viewerCount"], json!(0));
    assert_eq!(s["peakViewers"], json!(1));
    assert!(s["endedAt"].is_string());
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM outbox WHERE subject LIKE '%.session.ended'",
                &[]
            )
            .await,
        1
    );
}

#[tokio::test]
async fn a_live_session_whose_room_is_empty_in_livekit_ends_as_orphaned_cleanup() {
    let stack = stack_with(options(Duration::from_secs(2))).await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    stack.pause_reconciliation().await;
    let id = stack.live_session(creator, "video_live").await;
    let room = format!("live_video_{id}");

    // The host leaves and the webhook is lost: we believe the session live with its host,
    // LiveKit has an empty room (kept for its departure timeout).
    stack
        .faults(json!({"dropNext": 1, "event": "participant_left"}))
        .await;
    stack.sim("leave", &room, creator).await;
    stack.settle().await;
    assert_eq!(stack.session(creator, id).await["status"], json!("live"));
    assert!(stack.sim_rooms().await.to_string().contains(&room));

    stack.resume_reconciliation().await;
    let s = stack
        .wait_session(creator, id, "the orphan ended", |s| {
            s["status"] == json!("ended")
        })
        .await;
    assert_eq!(s["endReason"], json!("orphaned_cleanup"), "{s}");
    assert!(
        !stack.sim_rooms().await.to_string().contains(&room),
        "the room is deleted"
    );
    assert!(!stack.is_active(id, creator).await);
}

/// A viewer joins while a reconciliation pass is between its `ListParticipants` call and its
/// lock on the session: the pass must not take the viewer's fresh connection for a lost one.
/// The pass is held at the lock by the test (a row lock on the session) so the interleaving
/// is certain.
#[tokio::test]
async fn a_join_during_a_reconciliation_pass_is_not_closed() {
    let stack = stack_with(options(Duration::from_secs(1800))).await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let viewer = testkit::profile(&stack.db, "viewer", false, None).await;
    stack.pause_reconciliation().await;
    let id = stack.live_session(creator, "video_live").await;
    let token = stack.token(viewer, id).await;

    let locker = stack.db.sql().await;
    locker.batch_execute("BEGIN").await.unwrap();
    locker
        .query(
            "SELECT id FROM live_sessions WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .unwrap();
    stack.resume_reconciliation().await;
    testkit::eventually(
        Duration::from_secs(10),
        "the reconciliation waiting for the session's lock",
        || async {
            (stack
                .count(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%live_sessions%'",
                    &[],
                )
                .await
                >= 1)
                .then_some(())
        },
    )
    .await;
    stack.join(&token).await;
    testkit::eventually(Duration::from_secs(10), "the join stored", || async {
        (stack
            .webhooks_stored("participant_joined", &viewer.to_string())
            .await
            == 1)
            .then_some(())
    })
    .await;
    locker.batch_execute("COMMIT").await.unwrap();

    stack.settle().await;
    // The viewer is in the room (LiveKit says so); a few passes later we must agree.
    let passes = stack.reconciliations_fired().await;
    testkit::eventually(Duration::from_secs(10), "two more passes", || async {
        (stack.reconciliations_fired().await >= passes + 2).then_some(())
    })
    .await;
    let rooms = stack.sim_rooms().await;
    assert!(rooms.to_string().contains(&viewer.to_string()), "{rooms}");
    let s = stack.session(creator, id).await;
    assert_eq!(s["viewerCount"], json!(1), "{s}");
    assert!(stack.is_active(id, viewer).await);
}

/// Makes the session's no-show deadline due now.
async fn no_show_now(stack: &Stack, id: Uuid) {
    let n = stack
        .sql()
        .await
        .execute(
            "UPDATE deadlines SET due_at = now() WHERE kind = 'session.no_show' AND subject_id = $1 AND fired_at IS NULL AND cancelled_at IS NULL",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(n, 1, "one pending no-show deadline");
}

async fn no_show_outcome(stack: &Stack, id: Uuid) -> String {
    testkit::eventually(Duration::from_secs(10), "the no-show deadline fired", || async {
        stack
            .sql()
            .await
            .query_opt(
                "SELECT outcome FROM deadlines WHERE kind = 'session.no_show' AND subject_id = $1 AND fired_at IS NOT NULL",
                &[&id],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, String>(0))
    })
    .await
}

#[tokio::test]
async fn a_host_who_never_connects_ends_the_session_as_no_show() {
    let stack = crate::stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let id = stack.public_session(creator).await;
    no_show_now(&stack, id).await;
    let s = stack
        .wait_session(creator, id, "ended", |s| s["status"] == json!("ended"))
        .await;
    assert_eq!(s["endReason"], json!("no_show"));
    assert_eq!(no_show_outcome(&stack, id).await, "ended");
    stack.shutdown().await;
}

/// The host's connection is in LiveKit's record (webhook-ingest stored its join) but the
/// join was never applied: the fault suite saw it when session-manager died holding the
/// event (redelivered only after the consumer's ack wait) and the no-show ended the session
/// of a host who was in the room.
#[tokio::test]
async fn the_no_show_deadline_finds_a_recorded_join_that_was_not_applied() {
    let stack = crate::stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let id = stack.public_session(creator).await;
    stack
        .sql()
        .await
        .execute(
            "INSERT INTO livekit_participations (participant_sid, room_name, identity, joined_at) VALUES ('PA_unapplied', $1, $2, now() - interval '5 seconds')",
            &[&format!("live_video_{id}"), &creator.to_string()],
        )
        .await
        .unwrap();
    no_show_now(&stack, id).await;
    assert_eq!(no_show_outcome(&stack, id).await, "host_present");
    let s = stack.session(creator, id).await;
    assert_eq!(s["status"], json!("live"), "{s}");
    assert!(s["startedAt"].is_string(), "{s}");
    stack.shutdown().await;
}

/// The host's join webhook was lost: LiveKit, asked by the no-show deadline, has the host.
#[tokio::test]
async fn the_no_show_deadline_asks_livekit_before_ending() {
    let stack = crate::stack().await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let id = stack.public_session(creator).await;
    stack
        .faults(json!({"dropNext": 1, "event": "participant_joined"}))
        .await;
    stack.join(&stack.token(creator, id).await).await;
    stack.settle().await;
    assert_eq!(
        stack
            .webhooks_stored("participant_joined", &creator.to_string())
            .await,
        0
    );
    no_show_now(&stack, id).await;
    assert_eq!(no_show_outcome(&stack, id).await, "host_present");
    assert_eq!(stack.session(creator, id).await["status"], json!("live"));
    stack.shutdown().await;
}
