//! The idempotent consumer: an effect recorded with `mark_processed` in one transaction
//! happens once per event whatever JetStream redelivers; failing events end on the
//! dead-letter subject; replicas share one durable consumer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::consumer::{self, ConsumerSpec, Handler, HandlerError};
use bus::relay;
use bus::{Event, Family, Incoming};
use diesel::sql_types;
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::{Env, event, header, shutdown_signal, stop};

/// What the test handler does besides recording the call.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Effect and `mark_processed` in one transaction.
    Apply,
    /// As `Apply`, but the first delivery reports a failure after its transaction
    /// committed (the acknowledgement is lost, the process dies before acking...).
    ApplyThenLoseFirstAck,
    /// Always asks for another try.
    RetryAlways,
    /// Refuses the event for good.
    Refuse,
}

/// Records every call, and the effect in `effects` (no unique key: a second effect of one
/// event would be a second row).
struct Recorder {
    pool: db::Pool,
    consumer: String,
    replica: &'static str,
    behaviour: Behaviour,
    calls: Arc<Mutex<Vec<(Uuid, i64)>>>,
    trace_ids: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn new(env: &Env, consumer: &str, replica: &'static str, behaviour: Behaviour) -> Recorder {
        Recorder {
            pool: env.db.pool.clone(),
            consumer: consumer.to_owned(),
            replica,
            behaviour,
            calls: Arc::default(),
            trace_ids: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<(Uuid, i64)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Handler for Recorder {
    fn handle(&self, event: Incoming) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push((event.id, event.delivered));
            self.trace_ids
                .lock()
                .unwrap()
                .push(crate::trace_id_of(&tracing::Span::current()));
            match self.behaviour {
                Behaviour::RetryAlways => {
                    return Err(HandlerError::Retry(anyhow::anyhow!("always failing")));
                }
                Behaviour::Refuse => {
                    return Err(HandlerError::Permanent(anyhow::anyhow!("refused for good")));
                }
                Behaviour::Apply | Behaviour::ApplyThenLoseFirstAck => {}
            }
            let mut conn = db::pool::conn(&self.pool).await?;
            let ev = &event;
            conn.transaction::<(), HandlerError, _>(async |c| {
                if consumer::mark_processed(c, &self.consumer, ev.id).await? {
                    diesel::sql_query(
                        "INSERT INTO effects (event_id, event_type, replica) VALUES ($1, $2, $3)",
                    )
                    .bind::<sql_types::Uuid, _>(ev.id)
                    .bind::<sql_types::Text, _>(&ev.event_type)
                    .bind::<sql_types::Text, _>(self.replica)
                    .execute(c)
                    .await?;
                }
                Ok(())
            })
            .await?;
            if self.behaviour == Behaviour::ApplyThenLoseFirstAck && event.delivered == 1 {
                return Err(HandlerError::Retry(anyhow::anyhow!("ack lost")));
            }
            Ok(())
        })
    }
}

async fn effects_table(env: &Env) {
    env.sql
        .batch_execute(
            "CREATE TABLE effects (event_id uuid NOT NULL, event_type text NOT NULL, replica text NOT NULL)",
        )
        .await
        .unwrap();
}

/// The defaults: an ack wait of 30 s, so that under load a slow handler is not taken for a
/// lost one and "delivered once" can be asserted exactly.
fn spec(name: &str) -> ConsumerSpec {
    ConsumerSpec::new(name, Family::Session)
}

fn effects_of(e: &Event) -> String {
    format!("SELECT count(*) FROM effects WHERE event_id = '{}'", e.id)
}

/// Waits until the handler was called `want` times, then a little longer to see that no
/// more calls come.
async fn expect_calls(handler: &Recorder, want: usize) {
    testkit::eventually(crate::PATIENCE, "handler calls", || async {
        (handler.calls.lock().unwrap().len() >= want).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handler.calls().len(),
        want,
        "handler calls: {:?}",
        handler.calls()
    );
}

/// Waits until the consumer has nothing left to deliver and nothing unacknowledged.
async fn expect_all_acked(env: &Env, name: &str, stream_messages: u64) {
    testkit::eventually(crate::PATIENCE, "every message acknowledged", || async {
        let info = env.consumer_info(Family::Session, name).await;
        (info.num_pending == 0
            && info.num_ack_pending == 0
            && info.ack_floor.stream_sequence == stream_messages)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_duplicated_event_changes_the_effect_once() {
    let env = Env::new().await;
    effects_table(&env).await;
    let e = event("live");
    // The same envelope twice under two message ids: JetStream keeps both.
    env.publish(&e, "copy-1").await;
    env.publish(&e, "copy-2").await;
    assert_eq!(env.stream_messages(Family::Session).await, 2);

    let handler = Arc::new(Recorder::new(&env, "dup", "a", Behaviour::Apply));
    let (tx, rx) = shutdown_signal();
    let task = consumer::spawn_consumer(
        env.js.clone(),
        env.subjects.clone(),
        spec("dup"),
        handler.clone(),
        rx,
    )
    .await
    .unwrap();

    expect_calls(&handler, 2).await;
    assert!(handler.calls().iter().all(|(id, _)| *id == e.id));
    assert_eq!(env.count(&effects_of(&e)).await, 1);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM processed_events WHERE consumer = 'dup' AND event_id = '{}'",
            e.id
        ))
        .await,
        1
    );
    expect_all_acked(&env, "dup", 2).await;
    stop(&tx, vec![task]).await;
}

/// The first delivery commits its effect and then fails to acknowledge: JetStream delivers
/// again, and the second delivery changes nothing.
#[tokio::test]
async fn an_event_redelivered_after_its_effect_committed_changes_nothing() {
    let env = Env::new().await;
    effects_table(&env).await;
    let e = event("live");
    env.enqueue(std::slice::from_ref(&e)).await;
    relay::flush(&env.db.pool, &env.js, Duration::from_secs(5))
        .await
        .unwrap();

    let handler = Arc::new(Recorder::new(
        &env,
        "redeliver",
        "a",
        Behaviour::ApplyThenLoseFirstAck,
    ));
    let (tx, rx) = shutdown_signal();
    let task = consumer::spawn_consumer(
        env.js.clone(),
        env.subjects.clone(),
        spec("redeliver"),
        handler.clone(),
        rx,
    )
    .await
    .unwrap();

    expect_calls(&handler, 2).await;
    assert_eq!(handler.calls(), [(e.id, 1), (e.id, 2)]);
    assert_eq!(env.count(&effects_of(&e)).await, 1);
    assert_eq!(env.count("SELECT count(*) FROM processed_events").await, 1);
    expect_all_acked(&env, "redeliver", 1).await;
    stop(&tx, vec![task]).await;
}

#[tokio::test]
async fn an_event_that_keeps_failing_ends_on_the_dead_letter_subject_after_max_deliver() {
    let env = Env::new().await;
    effects_table(&env).await;
    let dead = env.tap(env.subjects.dead_letter("failing")).await;
    let e = event("live");
    env.publish(&e, &e.id.to_string()).await;

    let handler = Arc::new(Recorder::new(&env, "failing", "a", Behaviour::RetryAlways));
    let (tx, rx) = shutdown_signal();
    let task = consumer::spawn_consumer(
        env.js.clone(),
        env.subjects.clone(),
        ConsumerSpec {
            max_deliver: 3,
            ack_wait: Duration::from_secs(2),
            ..spec("failing")
        },
        handler.clone(),
        rx,
    )
    .await
    .unwrap();

    dead.expect("one dead letter", 1).await;
    assert_eq!(handler.calls(), [(e.id, 1), (e.id, 2), (e.id, 3)]);
    let letter = &dead.messages()[0];
    assert_eq!(letter.payload.as_ref(), e.encode().as_slice());
    assert_eq!(
        header(letter.headers.as_ref(), "Ipelya-Original-Subject"),
        Some(e.subject(&env.subjects))
    );
    let error = header(letter.headers.as_ref(), "Ipelya-Error").unwrap();
    assert!(error.contains("always failing"), "{error}");

    // Terminated, not left pending.
    expect_all_acked(&env, "failing", 1).await;
    assert_eq!(handler.calls().len(), 3);
    assert_eq!(dead.len(), 1);
    assert_eq!(env.count("SELECT count(*) FROM effects").await, 0);
    stop(&tx, vec![task]).await;
}

#[tokio::test]
async fn a_refused_event_goes_to_the_dead_letter_subject_without_retries() {
    let env = Env::new().await;
    let dead = env.tap(env.subjects.dead_letter("refusing")).await;
    let e = event("live");
    env.publish(&e, &e.id.to_string()).await;

    let handler = Arc::new(Recorder::new(&env, "refusing", "a", Behaviour::Refuse));
    let (tx, rx) = shutdown_signal();
    let task = consumer::spawn_consumer(
        env.js.clone(),
        env.subjects.clone(),
        spec("refusing"),
        handler.clone(),
        rx,
    )
    .await
    .unwrap();

    dead.expect("one dead letter", 1).await;
    expect_all_acked(&env, "refusing", 1).await;
    assert_eq!(handler.calls(), [(e.id, 1)]);
    stop(&tx, vec![task]).await;
}

#[tokio::test]
async fn an_undecodable_message_is_dead_lettered_at_once_and_does_not_block_the_next() {
    let env = Env::new().await;
    effects_table(&env).await;
    let dead = env.tap(env.subjects.dead_letter("strict")).await;
    let garbage = b"definitely not an envelope".to_vec();
    let subject = env.subjects.subject(Family::Session, "live");
    env.publish_raw(&subject, "garbage", garbage.clone()).await;
    let e = event("live");
    env.publish(&e, &e.id.to_string()).await;

    let handler = Arc::new(Recorder::new(&env, "strict", "a", Behaviour::Apply));
    let (tx, rx) = shutdown_signal();
    let task = consumer::spawn_consumer(
        env.js.clone(),
        env.subjects.clone(),
        ConsumerSpec {
            // one at a time: the valid event waits for the garbage to be dealt with
            concurrency: 1,
            ..spec("strict")
        },
        handler.clone(),
        rx,
    )
    .await
    .unwrap();

    env.wait_count("the valid event's effect", &effects_of(&e), 1)
        .await;
    dead.expect("the garbage, dead-lettered once", 1).await;
    let letter = &dead.messages()[0];
    assert_eq!(letter.payload.as_ref(), garbage.as_slice());
    assert_eq!(
        header(letter.headers.as_ref(), "Ipelya-Original-Subject"),
        Some(subject)
    );
    // The handler never saw the garbage; the valid event was delivered once.
    assert_eq!(handler.calls(), [(e.id, 1)]);
    expect_all_acked(&env, "strict", 2).await;
    let info = env.consumer_info(Family::Session, "strict").await;
    assert_eq!(info.num_redelivered, 0, "garbage delivered once");
    stop(&tx, vec![task]).await;
}

/// Two replicas run the same durable consumer: the events are spread over both and each
/// is handled exactly once overall.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_the_events_and_handle_each_exactly_once() {
    let env = Env::new().await;
    effects_table(&env).await;
    let a = Arc::new(Recorder::new(&env, "shared", "a", Behaviour::Apply));
    let b = Arc::new(Recorder::new(&env, "shared", "b", Behaviour::Apply));
    let (tx, rx) = shutdown_signal();
    let spec = ConsumerSpec {
        concurrency: 4,
        ..spec("shared")
    };
    let tasks = vec![
        consumer::spawn_consumer(
            env.js.clone(),
            env.subjects.clone(),
            spec.clone(),
            a.clone(),
            rx.clone(),
        )
        .await
        .unwrap(),
        consumer::spawn_consumer(
            env.other_js().await,
            env.subjects.clone(),
            spec,
            b.clone(),
            rx,
        )
        .await
        .unwrap(),
    ];
    // Both replicas are pulling before the first event arrives.
    testkit::eventually(crate::PATIENCE, "two waiting pull requests", || async {
        (env.consumer_info(Family::Session, "shared")
            .await
            .num_waiting
            >= 2)
            .then_some(())
    })
    .await;

    let events: Vec<Event> = (0..100).map(|_| event("live")).collect();
    env.enqueue(&events).await;
    relay::flush(&env.db.pool, &env.js, Duration::from_secs(5))
        .await
        .unwrap();

    env.wait_count("one effect per event", "SELECT count(*) FROM effects", 100)
        .await;
    assert_eq!(
        env.count("SELECT count(DISTINCT event_id) FROM effects")
            .await,
        100
    );
    assert_eq!(
        env.count("SELECT count(*) FROM processed_events").await,
        100
    );
    expect_all_acked(&env, "shared", 100).await;
    let (by_a, by_b) = (a.calls().len(), b.calls().len());
    assert_eq!(by_a + by_b, 100, "no event delivered twice");
    assert!(
        by_a > 0 && by_b > 0,
        "both replicas worked: {by_a} + {by_b}"
    );
    stop(&tx, tasks).await;
}

#[tokio::test]
async fn a_consumer_acknowledges_and_skips_event_types_it_does_not_handle() {
    let env = Env::new().await;
    effects_table(&env).await;
    let events: Vec<Event> = (0..6)
        .map(|i| event(if i % 2 == 0 { "live" } else { "ended" }))
        .collect();
    for e in &events {
        env.publish(e, &e.id.to_string()).await;
    }
    let handler = Arc::new(Recorder::new(&env, "picky", "a", Behaviour::Apply));
    let (tx, rx) = shutdown_signal();
    let task = consumer::spawn_consumer(
        env.js.clone(),
        env.subjects.clone(),
        ConsumerSpec {
            event_types: vec!["session.live".into()],
            ..spec("picky")
        },
        handler.clone(),
        rx,
    )
    .await
    .unwrap();

    expect_all_acked(&env, "picky", 6).await;
    env.wait_count("effects of session.live", "SELECT count(*) FROM effects", 3)
        .await;
    assert_eq!(
        env.count("SELECT count(*) FROM effects WHERE event_type = 'session.live'")
            .await,
        3
    );
    let mut live: Vec<(Uuid, i64)> = events.iter().step_by(2).map(|e| (e.id, 1)).collect();
    let mut calls = handler.calls();
    live.sort();
    calls.sort();
    assert_eq!(
        calls, live,
        "only session.live reached the handler, once each"
    );
    // The skipped events were acknowledged (the ack floor is the last message): they are
    // not left to time out and come back.
    let info = env.consumer_info(Family::Session, "picky").await;
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(info.delivered.stream_sequence, 6);
    stop(&tx, vec![task]).await;
}

/// One trace follows the request through the outbox and NATS into the handler.
#[tokio::test]
async fn the_handler_runs_in_the_trace_of_the_request_that_wrote_the_event() {
    use tracing::Instrument;
    let (_guard, _provider) = crate::otel_tracing();
    let env = Env::new().await;
    effects_table(&env).await;
    let e = event("live");
    let span = tracing::info_span!("request");
    let trace_id = crate::trace_id_of(&span);
    env.enqueue(std::slice::from_ref(&e)).instrument(span).await;
    relay::flush(&env.db.pool, &env.js, Duration::from_secs(5))
        .await
        .unwrap();

    let handler = Arc::new(Recorder::new(&env, "traced", "a", Behaviour::Apply));
    let (tx, rx) = shutdown_signal();
    let task = consumer::spawn_consumer(
        env.js.clone(),
        env.subjects.clone(),
        spec("traced"),
        handler.clone(),
        rx,
    )
    .await
    .unwrap();
    expect_calls(&handler, 1).await;
    assert_eq!(*handler.trace_ids.lock().unwrap(), [trace_id]);
    stop(&tx, vec![task]).await;
}
