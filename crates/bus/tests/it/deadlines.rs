//! Durable deadlines: one pending per (kind, subject), cancelled by a row update, fired once
//! within a second of `due_at` by whichever replica is free, across restarts and failures.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::deadlines::{self, DeadlineHandler};
use chrono::{DateTime, SubsecRound, Utc};
use db::AsyncPgConnection;
use db::models::DeadlineRow;
use diesel::sql_types;
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::{Env, shutdown_signal, stop};

/// Records every attempt and, in the firing transaction, one `effects` row per firing (no
/// unique key: a second firing would be a second row).
#[derive(Default)]
struct Recorder {
    worker: &'static str,
    attempts: Mutex<Vec<Uuid>>,
    /// Deadlines whose first attempt fails after writing its effect.
    fail_first: HashSet<Uuid>,
    /// Deadlines that always fail.
    fail_always: HashSet<Uuid>,
    /// Deadlines whose effect takes this long (a LiveKit call inside the transaction).
    slow: Option<(Uuid, Duration)>,
    /// Cancel every pending deadline of the subject as part of the effect; the counts.
    cancel_subject: bool,
    cancelled: Mutex<Vec<usize>>,
}

impl Recorder {
    fn new(worker: &'static str) -> Recorder {
        Recorder {
            worker,
            ..Recorder::default()
        }
    }

    fn attempts(&self) -> Vec<Uuid> {
        self.attempts.lock().unwrap().clone()
    }
}

impl DeadlineHandler for Recorder {
    fn fire<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        deadline: &'a DeadlineRow,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let nth = {
                let mut attempts = self.attempts.lock().unwrap();
                attempts.push(deadline.id);
                attempts.iter().filter(|id| **id == deadline.id).count()
            };
            diesel::sql_query("INSERT INTO effects (deadline_id, worker) VALUES ($1, $2)")
                .bind::<sql_types::Uuid, _>(deadline.id)
                .bind::<sql_types::Text, _>(self.worker)
                .execute(conn)
                .await?;
            if let Some((id, pause)) = self.slow
                && id == deadline.id
            {
                tokio::time::sleep(pause).await;
            }
            if self.fail_always.contains(&deadline.id)
                || (nth == 1 && self.fail_first.contains(&deadline.id))
            {
                anyhow::bail!("attempt {nth} fails");
            }
            if self.cancel_subject {
                let n = deadlines::cancel_all(conn, deadline.subject_id).await?;
                self.cancelled.lock().unwrap().push(n);
            }
            Ok("done".to_owned())
        })
    }
}

async fn effects_table(env: &Env) {
    env.sql
        .batch_execute(
            "CREATE TABLE effects (deadline_id uuid NOT NULL, worker text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        .await
        .unwrap();
}

fn worker(
    env: &Env,
    kinds: &[&str],
    handler: &Arc<Recorder>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    deadlines::spawn_worker(
        env.db.pool.clone(),
        env.db.url.clone(),
        kinds.iter().map(|k| (*k).to_owned()).collect(),
        handler.clone(),
        shutdown,
    )
}

/// `now + ms`, at the database's precision (microseconds) so it compares equal when read.
fn in_ms(ms: i64) -> DateTime<Utc> {
    (Utc::now() + chrono::Duration::milliseconds(ms)).trunc_subsecs(6)
}

/// Schedules one deadline in its own transaction; returns its id (none when one was
/// already pending).
async fn schedule(env: &Env, kind: &str, subject: Uuid, due_at: DateTime<Utc>) -> Option<Uuid> {
    let mut conn = env.db.conn().await;
    let scheduled = deadlines::schedule(&mut conn, kind, subject, due_at, serde_json::json!({}))
        .await
        .unwrap();
    if !scheduled {
        return None;
    }
    deadlines::pending(&mut conn, kind, subject)
        .await
        .unwrap()
        .map(|d| d.id)
}

async fn effects_of(env: &Env, id: Uuid) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM effects WHERE deadline_id = '{id}'"
    ))
    .await
}

async fn row(env: &Env, id: Uuid) -> DeadlineRow {
    use diesel::{QueryDsl, SelectableHelper};
    let mut conn = env.db.conn().await;
    db::schema::deadlines::table
        .find(id)
        .select(DeadlineRow::as_select())
        .first(&mut conn)
        .await
        .unwrap()
}

/// How early and how late the fired deadlines fired, in seconds: the smallest
/// `fired_at - due_at`, and the largest `fired_at - max(due_at, visible_at)`, where
/// `visible_at` is when the scheduling transaction had committed (on a loaded machine the
/// test itself may write a deadline after its due time; no worker can fire it before).
async fn lateness(env: &Env, visible_at: DateTime<Utc>) -> (f64, f64) {
    let rows = env
        .sql
        .query(
            "SELECT due_at, fired_at FROM deadlines WHERE fired_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    let secs = |d: chrono::Duration| d.num_microseconds().unwrap() as f64 / 1e6;
    let mut early = f64::MAX;
    let mut late = f64::MIN;
    for r in rows {
        let (due, fired): (DateTime<Utc>, DateTime<Utc>) = (r.get(0), r.get(1));
        early = early.min(secs(fired - due));
        late = late.max(secs(fired - due.max(visible_at)));
    }
    (early, late)
}

const FIRED: &str = "SELECT count(*) FROM deadlines WHERE fired_at IS NOT NULL";

/// Every deadline that has an effect has exactly one.
async fn assert_each_fired_once(env: &Env) {
    assert_eq!(
        env.count(
            "SELECT count(*) FROM (SELECT deadline_id FROM effects GROUP BY deadline_id HAVING count(*) <> 1) twice"
        )
        .await,
        0,
        "a deadline fired more than once"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM deadlines d WHERE (d.fired_at IS NOT NULL) <> EXISTS (SELECT 1 FROM effects e WHERE e.deadline_id = d.id)"
        )
        .await,
        0,
        "fired rows and effects disagree"
    );
}

#[tokio::test]
async fn scheduling_twice_keeps_one_pending_deadline() {
    let env = Env::new().await;
    let subject = Uuid::new_v4();
    let first_due = in_ms(60_000);

    let first = schedule(&env, "grace", subject, first_due).await;
    assert!(first.is_some());
    assert_eq!(
        schedule(&env, "grace", subject, in_ms(120_000)).await,
        None,
        "already pending"
    );
    let mut conn = env.db.conn().await;
    let pending = deadlines::pending(&mut conn, "grace", subject)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((Some(pending.id), pending.due_at), (first, first_due));
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM deadlines WHERE kind = 'grace' AND subject_id = '{subject}'"
        ))
        .await,
        1
    );

    // Another kind for the subject, the kind for another subject: both their own.
    assert!(
        schedule(&env, "max", subject, in_ms(60_000))
            .await
            .is_some()
    );
    assert!(
        schedule(&env, "grace", Uuid::new_v4(), in_ms(60_000))
            .await
            .is_some()
    );
    assert_eq!(deadlines::pending_count(&env.db.pool).await.unwrap(), 3);

    // Once cancelled, the kind can be scheduled again for the subject.
    assert_eq!(
        deadlines::cancel(&mut conn, "grace", subject)
            .await
            .unwrap(),
        1
    );
    let again = schedule(&env, "grace", subject, in_ms(60_000)).await;
    assert!(again.is_some() && again != first);
    assert_eq!(deadlines::pending_count(&env.db.pool).await.unwrap(), 3);
}

#[tokio::test]
async fn a_cancelled_deadline_never_fires() {
    let env = Env::new().await;
    effects_table(&env).await;
    let (cancelled_subject, kept_subject) = (Uuid::new_v4(), Uuid::new_v4());
    let due = in_ms(300);
    let cancelled = schedule(&env, "grace", cancelled_subject, due)
        .await
        .unwrap();
    let kept = schedule(&env, "grace", kept_subject, due).await.unwrap();
    let mut conn = env.db.conn().await;
    assert_eq!(
        deadlines::cancel(&mut conn, "grace", cancelled_subject)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        deadlines::cancel(&mut conn, "grace", cancelled_subject)
            .await
            .unwrap(),
        0,
        "nothing left to cancel"
    );

    let handler = Arc::new(Recorder::new("w"));
    let (tx, rx) = shutdown_signal();
    let w = worker(&env, &["grace"], &handler, rx);
    env.wait_count("the kept deadline fired", FIRED, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(effects_of(&env, kept).await, 1);
    assert_eq!(effects_of(&env, cancelled).await, 0);
    assert_eq!(handler.attempts(), [kept]);
    let r = row(&env, cancelled).await;
    assert!(r.fired_at.is_none() && r.cancelled_at.is_some(), "{r:?}");
    stop(&tx, vec![w]).await;
}

/// DESIGN.md: "a deadline fires once, within 1 s of `due_at`". Measured in the database:
/// `fired_at - due_at`, never negative (not early), always under a second.
#[tokio::test]
async fn a_deadline_fires_once_within_a_second_of_its_due_time() {
    let env = Env::new().await;
    effects_table(&env).await;
    let handler = Arc::new(Recorder::new("w"));
    let (tx, rx) = shutdown_signal();
    let w = worker(&env, &["grace"], &handler, rx);
    // Give the worker time to go to sleep: the deadlines must wake it.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The last is further away than the worker's longest sleep.
    let mut ids = Vec::new();
    for ms in [400, 1100, 2300] {
        ids.push(
            schedule(&env, "grace", Uuid::new_v4(), in_ms(ms))
                .await
                .unwrap(),
        );
    }
    let visible_at = Utc::now();
    env.wait_count("three deadlines fired", FIRED, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    for id in &ids {
        assert_eq!(effects_of(&env, *id).await, 1);
        assert_eq!(row(&env, *id).await.outcome.as_deref(), Some("done"));
    }
    assert_eq!(handler.attempts(), ids);
    let (earliest, latest) = lateness(&env, visible_at).await;
    assert!(earliest >= 0.0, "fired {earliest} s before due");
    assert!(latest < 1.0, "fired {latest} s after due");
    stop(&tx, vec![w]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_fire_fifty_simultaneous_deadlines_once_each() {
    let env = Env::new().await;
    effects_table(&env).await;
    let (tx, rx) = shutdown_signal();
    let handlers = [
        Arc::new(Recorder::new("w1")),
        Arc::new(Recorder::new("w2")),
        Arc::new(Recorder::new("w3")),
    ];
    let workers: Vec<_> = handlers
        .iter()
        .map(|h| worker(&env, &["grace"], h, rx.clone()))
        .collect();

    // Fifty deadlines due at the same instant, written in one transaction.
    let due = in_ms(1_500);
    let mut conn = env.db.conn().await;
    conn.transaction::<(), diesel::result::Error, _>(async |c| {
        for _ in 0..50 {
            let scheduled =
                deadlines::schedule(c, "grace", Uuid::new_v4(), due, serde_json::json!({})).await?;
            assert!(scheduled);
        }
        Ok(())
    })
    .await
    .unwrap();
    let visible_at = Utc::now();

    env.wait_count("fifty deadlines fired", FIRED, 50).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.count("SELECT count(*) FROM effects").await, 50);
    assert_each_fired_once(&env).await;
    let attempts: usize = handlers.iter().map(|h| h.attempts().len()).sum();
    assert_eq!(attempts, 50, "no deadline was even attempted twice");
    let (earliest, latest) = lateness(&env, visible_at).await;
    assert!(
        earliest >= 0.0 && latest < 1.0,
        "lateness {earliest}..{latest} s"
    );
    stop(&tx, workers).await;
}

/// Deadlines survive restarts: one that came due while no worker ran fires at start.
#[tokio::test]
async fn a_deadline_that_came_due_while_no_worker_ran_fires_once_at_start() {
    let env = Env::new().await;
    effects_table(&env).await;
    let long_ago = schedule(&env, "grace", Uuid::new_v4(), in_ms(-30_000))
        .await
        .unwrap();
    let just_now = schedule(&env, "grace", Uuid::new_v4(), in_ms(-1_000))
        .await
        .unwrap();

    let started = Utc::now();
    let handler = Arc::new(Recorder::new("w"));
    let (tx, rx) = shutdown_signal();
    let w = worker(&env, &["grace"], &handler, rx);
    env.wait_count("both fired", FIRED, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(handler.attempts(), [long_ago, just_now], "oldest first");
    assert_each_fired_once(&env).await;
    for id in [long_ago, just_now] {
        let fired = row(&env, id).await.fired_at.unwrap();
        assert!(
            fired - started < chrono::Duration::seconds(1),
            "fired {} ms after the start",
            (fired - started).num_milliseconds()
        );
    }
    stop(&tx, vec![w]).await;
}

#[tokio::test]
async fn a_failed_firing_is_rolled_back_and_retried() {
    let env = Env::new().await;
    effects_table(&env).await;
    let id = schedule(&env, "grace", Uuid::new_v4(), in_ms(-100))
        .await
        .unwrap();
    let handler = Arc::new(Recorder {
        fail_first: [id].into(),
        ..Recorder::new("w")
    });
    let (tx, rx) = shutdown_signal();
    let w = worker(&env, &["grace"], &handler, rx);
    env.wait_count("fired on the second attempt", FIRED, 1)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(handler.attempts(), [id, id]);
    // The first attempt's effect was rolled back with it.
    assert_eq!(effects_of(&env, id).await, 1);
    let r = row(&env, id).await;
    assert_eq!(r.outcome.as_deref(), Some("done"));
    assert!(r.cancelled_at.is_none());
    stop(&tx, vec![w]).await;
}

/// The effect may end what the subject's deadlines were about (`cancel_all`): the deadline
/// that fired is marked fired, not cancelled; the others are cancelled.
#[tokio::test]
async fn the_effect_may_cancel_its_own_subjects_deadlines() {
    let env = Env::new().await;
    effects_table(&env).await;
    let (subject, other) = (Uuid::new_v4(), Uuid::new_v4());
    let firing = schedule(&env, "grace", subject, in_ms(-100)).await.unwrap();
    let sibling = schedule(&env, "max", subject, in_ms(3_600_000))
        .await
        .unwrap();
    let unrelated = schedule(&env, "grace", other, in_ms(3_600_000))
        .await
        .unwrap();
    let handler = Arc::new(Recorder {
        cancel_subject: true,
        ..Recorder::new("w")
    });
    let (tx, rx) = shutdown_signal();
    let w = worker(&env, &["grace", "max"], &handler, rx);
    env.wait_count("fired", FIRED, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(
        *handler.cancelled.lock().unwrap(),
        [2],
        "cancel_all saw the firing deadline and its sibling"
    );
    let r = row(&env, firing).await;
    assert!(r.fired_at.is_some() && r.cancelled_at.is_none(), "{r:?}");
    assert_eq!(r.outcome.as_deref(), Some("done"));
    let r = row(&env, sibling).await;
    assert!(r.fired_at.is_none() && r.cancelled_at.is_some(), "{r:?}");
    let r = row(&env, unrelated).await;
    assert!(r.fired_at.is_none() && r.cancelled_at.is_none(), "{r:?}");
    assert_eq!(handler.attempts(), [firing]);
    stop(&tx, vec![w]).await;
}

/// A replica stops (deploy); the next one fires what is left, and nothing twice.
#[tokio::test]
async fn a_new_worker_fires_the_rest_exactly_once_after_the_old_one_stopped() {
    let env = Env::new().await;
    effects_table(&env).await;
    let mut due_now = Vec::new();
    for _ in 0..5 {
        due_now.push(
            schedule(&env, "grace", Uuid::new_v4(), in_ms(-500))
                .await
                .unwrap(),
        );
    }
    let later_due = in_ms(1_500);
    let mut due_later = Vec::new();
    for _ in 0..5 {
        due_later.push(
            schedule(&env, "grace", Uuid::new_v4(), later_due)
                .await
                .unwrap(),
        );
    }

    let first = Arc::new(Recorder::new("first"));
    let (tx1, rx1) = shutdown_signal();
    let w1 = worker(&env, &["grace"], &first, rx1);
    env.wait_count("the due ones fired", FIRED, 5).await;
    stop(&tx1, vec![w1]).await;

    // Nobody fires anything while no worker runs.
    let wait = (later_due - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;
    assert_eq!(env.count(FIRED).await, 5);

    let second = Arc::new(Recorder::new("second"));
    let (tx2, rx2) = shutdown_signal();
    let w2 = worker(&env, &["grace"], &second, rx2);
    env.wait_count("the rest fired", FIRED, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(env.count("SELECT count(*) FROM effects").await, 10);
    assert_each_fired_once(&env).await;
    assert_eq!(first.attempts(), due_now);
    let mut second_fired = second.attempts();
    second_fired.sort();
    due_later.sort();
    assert_eq!(second_fired, due_later);
    stop(&tx2, vec![w2]).await;
}

#[tokio::test]
async fn a_worker_fires_only_its_own_kinds() {
    let env = Env::new().await;
    effects_table(&env).await;
    let mine = schedule(&env, "mine", Uuid::new_v4(), in_ms(-100))
        .await
        .unwrap();
    let theirs = schedule(&env, "theirs", Uuid::new_v4(), in_ms(-200))
        .await
        .unwrap();
    let handler = Arc::new(Recorder::new("w"));
    let (tx, rx) = shutdown_signal();
    let w = worker(&env, &["mine"], &handler, rx);
    env.wait_count("mine fired", FIRED, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(handler.attempts(), [mine]);
    let r = row(&env, theirs).await;
    assert!(r.fired_at.is_none() && r.cancelled_at.is_none(), "{r:?}");
    stop(&tx, vec![w]).await;
}

/// A deadline whose effect keeps failing (LiveKit down during a host-grace check) is
/// retried; the other due deadlines must still fire within a second of their due time.
#[tokio::test]
async fn a_failing_deadline_does_not_hold_back_the_others() {
    let env = Env::new().await;
    effects_table(&env).await;
    let failing = schedule(&env, "grace", Uuid::new_v4(), in_ms(-2_000))
        .await
        .unwrap();
    let healthy = schedule(&env, "grace", Uuid::new_v4(), in_ms(300))
        .await
        .unwrap();
    let handler = Arc::new(Recorder {
        fail_always: [failing].into(),
        ..Recorder::new("w")
    });
    let (tx, rx) = shutdown_signal();
    let w = worker(&env, &["grace"], &handler, rx);

    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let attempts = handler.attempts();
    assert!(
        attempts.contains(&failing),
        "the failing one was tried: {attempts:?}"
    );
    assert_eq!(
        effects_of(&env, healthy).await,
        1,
        "the healthy deadline, due 1.7 s ago, has not fired; attempts: {} of the failing one, {} of the healthy one",
        attempts.iter().filter(|a| **a == failing).count(),
        attempts.iter().filter(|a| **a == healthy).count()
    );
    let r = row(&env, healthy).await;
    let late = r.fired_at.unwrap() - r.due_at;
    assert!(late < chrono::Duration::seconds(1), "{late:?} late");
    stop(&tx, vec![w]).await;
}

/// Counts the rounds of the deadline workers running on this thread: each round ends by
/// setting the `deadlines_pending` gauge.
#[derive(Default)]
struct RoundCounter(Arc<std::sync::atomic::AtomicUsize>);

impl metrics::GaugeFn for RoundCounter {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl metrics::Recorder for RoundCounter {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        if key.name() == "deadlines_pending" {
            metrics::Gauge::from_arc(Arc::new(RoundCounter(self.0.clone())))
        } else {
            metrics::Gauge::noop()
        }
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// While one replica fires a deadline whose effect takes a while, the other replica sees
/// it due but locked: it should wait (a second at most, or a wake-up), not query in a
/// tight loop for as long as the effect runs.
#[tokio::test]
async fn a_worker_does_not_spin_while_another_replica_fires_a_slow_deadline() {
    let counter = RoundCounter::default();
    let _metrics = metrics::set_default_local_recorder(&counter);
    let rounds =
        || std::sync::atomic::AtomicUsize::load(&counter.0, std::sync::atomic::Ordering::Relaxed);
    let env = Env::new().await;
    effects_table(&env).await;
    let slow = schedule(&env, "grace", Uuid::new_v4(), in_ms(1_600))
        .await
        .unwrap();
    let handler = Arc::new(Recorder {
        slow: Some((slow, Duration::from_millis(1_500))),
        ..Recorder::new("w")
    });
    let (tx, rx) = shutdown_signal();
    // Both replicas run on this thread, so the recorder sees both.
    let workers = vec![
        worker(&env, &["grace"], &handler, rx.clone()),
        worker(&env, &["grace"], &handler, rx),
    ];
    // The baseline: 1.5 s of two idle workers waiting for the deadline.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let idle = rounds();
    // Then 1.5 s during which one of them fires it.
    env.wait_count("the slow deadline fired", FIRED, 1).await;
    let firing = rounds() - idle;
    stop(&tx, workers).await;

    assert_eq!(handler.attempts(), [slow]);
    assert!(idle < 20, "{idle} rounds of two idle workers in 1.5 s");
    assert!(
        firing < 20,
        "{firing} worker rounds while one deadline fired for 1.5 s (idle: {idle})"
    );
}
