//! The transactional outbox and its relay: what commits is published, once, in id order,
//! with `Nats-Msg-Id` = event id; what rolls back never is; nothing is lost while
//! JetStream does not answer.

use std::collections::HashSet;
use std::time::Duration;

use bus::relay::{self, RelayConfig};
use bus::{Event, Family, Incoming};
use diesel_async::AsyncConnection;
use tracing::Instrument;
use uuid::Uuid;

use crate::{Env, event, header, shutdown_signal, stop};

const UNPUBLISHED: &str = "SELECT count(*) FROM outbox WHERE published_at IS NULL";
const PUBLISHED: &str = "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL";

#[tokio::test]
async fn committed_events_are_published_in_id_order_with_their_id_as_msg_id() {
    let env = Env::new().await;
    let tap = env.tap(env.subjects.family_filter(Family::Session)).await;

    // Ten events whose ids sort in creation order, written out of that order in three
    // transactions: the relay publishes by id, not by insertion.
    let mut events: Vec<Event> = (0..10)
        .map(|i| event(if i % 2 == 0 { "live" } else { "ended" }))
        .collect();
    events.sort_by_key(|e| e.id);
    let pick = |idx: &[usize]| idx.iter().map(|&i| events[i].clone()).collect::<Vec<_>>();
    env.enqueue(&pick(&[7, 2, 9])).await;
    env.enqueue(&pick(&[0, 5])).await;
    {
        let mut conn = env.db.conn().await;
        for e in pick(&[8, 1, 6, 3, 4]) {
            bus::outbox::enqueue(&mut conn, &env.subjects, &e)
                .await
                .unwrap();
        }
    }
    assert_eq!(env.count(UNPUBLISHED).await, 10);

    // Batches of four: 4 + 4 + 2, then nothing left.
    let mut published = Vec::new();
    for _ in 0..4 {
        published.push(relay::relay_batch(&env.db.pool, &env.js, 4).await.unwrap());
    }
    assert_eq!(published, [4, 4, 2, 0]);
    assert_eq!(env.count(UNPUBLISHED).await, 0);
    assert_eq!(env.count(PUBLISHED).await, 10);
    assert_eq!(relay::backlog(&env.db.pool).await.unwrap(), 0);

    assert_eq!(env.stream_messages(Family::Session).await, 10);
    for (i, e) in events.iter().enumerate() {
        let m = env.stream_message(Family::Session, i as u64 + 1).await;
        assert_eq!(
            header(Some(&m.headers), "Nats-Msg-Id").as_deref(),
            Some(e.id.to_string().as_str()),
            "stream position {}",
            i + 1
        );
        assert_eq!(
            header(Some(&m.headers), "Ipelya-Event-Type").as_deref(),
            Some(e.event_type.as_str())
        );
        assert_eq!(m.subject.as_str(), e.subject(&env.subjects));
        let back = Incoming::decode(&m.subject, &m.payload, 1).unwrap();
        assert_eq!((back.id, back.event_type), (e.id, e.event_type.clone()));
    }
    tap.expect("published once each", 10).await;
}

#[tokio::test]
async fn events_of_a_rolled_back_transaction_are_never_published() {
    let env = Env::new().await;
    let tap = env.tap(env.subjects.family_filter(Family::Session)).await;
    let before = event("live");
    let rolled_back = [event("live"), event("ended")];
    let after = event("ended");

    env.enqueue(std::slice::from_ref(&before)).await;
    let mut conn = env.db.conn().await;
    let subjects = &env.subjects;
    let outcome = conn
        .transaction::<(), diesel::result::Error, _>(async |c| {
            bus::outbox::enqueue_all(c, subjects, &rolled_back).await?;
            // the state change fails after the event was written
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(outcome.is_err());
    env.enqueue(std::slice::from_ref(&after)).await;

    relay::flush(&env.db.pool, &env.js, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, 2);
    assert_eq!(env.count(UNPUBLISHED).await, 0);
    assert_eq!(env.stream_messages(Family::Session).await, 2);
    tap.expect("only the committed events", 2).await;
    let ids: Vec<String> = tap
        .messages()
        .iter()
        .map(|m| header(m.headers.as_ref(), "Nats-Msg-Id").unwrap())
        .collect();
    assert_eq!(ids, [before.id.to_string(), after.id.to_string()]);
}

#[tokio::test]
async fn flush_drains_a_backlog_larger_than_one_batch() {
    let env = Env::new().await;
    // flush publishes 512 rows per batch: 700 rows need two.
    for _ in 0..7 {
        let events: Vec<Event> = (0..100).map(|_| event("live")).collect();
        env.enqueue(&events).await;
    }
    assert_eq!(relay::backlog(&env.db.pool).await.unwrap(), 700);

    relay::flush(&env.db.pool, &env.js, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(relay::backlog(&env.db.pool).await.unwrap(), 0);
    assert_eq!(env.count(PUBLISHED).await, 700);
    assert_eq!(env.stream_messages(Family::Session).await, 700);
    // and flushing an empty outbox is a no-op
    relay::flush(&env.db.pool, &env.js, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(env.stream_messages(Family::Session).await, 700);
}

/// A relay that crashed after publishing and before marking publishes the rows again:
/// JetStream drops the second copies by `Nats-Msg-Id`.
#[tokio::test]
async fn publishing_the_same_rows_again_adds_nothing_to_the_stream() {
    let env = Env::new().await;
    let tap = env.tap(env.subjects.family_filter(Family::Session)).await;
    let events: Vec<Event> = (0..5).map(|_| event("live")).collect();
    env.enqueue(&events).await;

    assert_eq!(
        relay::relay_batch(&env.db.pool, &env.js, 100)
            .await
            .unwrap(),
        5
    );
    // the "crash": the marks are lost
    let reset = env
        .sql
        .execute("UPDATE outbox SET published_at = NULL", &[])
        .await
        .unwrap();
    assert_eq!(reset, 5);
    assert_eq!(
        relay::relay_batch(&env.db.pool, &env.js, 100)
            .await
            .unwrap(),
        5,
        "the relay published every row a second time"
    );

    // Ten publishes went out (core NATS sees them all), the stream kept five.
    tap.expect("two publishes per event", 10).await;
    assert_eq!(env.stream_messages(Family::Session).await, 5);
    assert_eq!(env.count(UNPUBLISHED).await, 0);
}

/// Two replicas' relays on one outbox: every row is published by exactly one of them (core
/// NATS counts publishes, so JetStream's deduplication cannot hide a double publish).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_publish_each_event_exactly_once() {
    let env = Env::new().await;
    let tap = env.tap(env.subjects.family_filter(Family::Session)).await;
    let (tx, rx) = shutdown_signal();
    let config = RelayConfig {
        batch: 7,
        poll_interval: Duration::from_millis(20),
        ..RelayConfig::default()
    };
    let relays = vec![
        relay::spawn_relay(
            env.db.pool.clone(),
            env.db.url.clone(),
            env.js.clone(),
            config.clone(),
            rx.clone(),
        ),
        relay::spawn_relay(
            env.db.pool.clone(),
            env.db.url.clone(),
            env.other_js().await,
            config,
            rx,
        ),
    ];

    // Written while both relays run, in small transactions.
    let mut ids = HashSet::new();
    for _ in 0..40 {
        let events: Vec<Event> = (0..5).map(|_| event("live")).collect();
        ids.extend(events.iter().map(|e| e.id.to_string()));
        env.enqueue(&events).await;
    }
    env.wait_count("all rows marked published", PUBLISHED, 200)
        .await;

    tap.expect("one publish per event", 200).await;
    let published: HashSet<String> = tap
        .messages()
        .iter()
        .map(|m| header(m.headers.as_ref(), "Nats-Msg-Id").unwrap())
        .collect();
    assert_eq!(published, ids);
    assert_eq!(env.stream_messages(Family::Session).await, 200);
    stop(&tx, relays).await;
}

/// The relay is woken by `NOTIFY` at commit, not by its poll: with a poll of a minute, a
/// row is still published at once.
#[tokio::test]
async fn the_relay_is_woken_at_commit() {
    let env = Env::new().await;
    let (tx, rx) = shutdown_signal();
    let relay = relay::spawn_relay(
        env.db.pool.clone(),
        env.db.url.clone(),
        env.js.clone(),
        RelayConfig {
            poll_interval: Duration::from_secs(60),
            ..RelayConfig::default()
        },
        rx,
    );
    env.enqueue(&[event("live")]).await;
    env.wait_count("first row published", PUBLISHED, 1).await;
    // The relay is now waiting (its listener is up: it woke it once already). Only the
    // notification of the next commit can wake it within the test's patience.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    env.enqueue(&[event("ended")]).await;
    env.wait_count("second row published", PUBLISHED, 2).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "published {:?} after the commit",
        started.elapsed()
    );
    assert_eq!(env.stream_messages(Family::Session).await, 2);
    stop(&tx, vec![relay]).await;
}

/// JetStream not answering (here: no stream for the subject) fails the batch and leaves its
/// rows unpublished; a running relay keeps retrying and publishes them once it can.
#[tokio::test]
async fn rows_wait_while_jetstream_does_not_answer_and_go_out_once_it_does() {
    let env = Env::without_streams().await;
    let events: Vec<Event> = (0..3).map(|_| event("live")).collect();
    env.enqueue(&events).await;

    let err = relay::relay_batch(&env.db.pool, &env.js, 10)
        .await
        .expect_err("no stream, no acknowledgement");
    assert!(err.to_string().contains("acknowledgement"), "{err:#}");
    assert_eq!(env.count(UNPUBLISHED).await, 3);

    let (tx, rx) = shutdown_signal();
    let relay = relay::spawn_relay(
        env.db.pool.clone(),
        env.db.url.clone(),
        env.js.clone(),
        RelayConfig {
            poll_interval: Duration::from_millis(50),
            ..RelayConfig::default()
        },
        rx,
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        env.count(UNPUBLISHED).await,
        3,
        "nothing is marked published without an acknowledgement"
    );

    env.subjects.ensure_streams(&env.js).await.unwrap();
    env.wait_count("backlog published once JetStream answers", UNPUBLISHED, 0)
        .await;
    assert_eq!(env.stream_messages(Family::Session).await, 3);
    let mut sorted: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    sorted.sort();
    for (i, id) in sorted.iter().enumerate() {
        let m = env.stream_message(Family::Session, i as u64 + 1).await;
        assert_eq!(
            header(Some(&m.headers), "Nats-Msg-Id"),
            Some(id.to_string())
        );
    }
    stop(&tx, vec![relay]).await;
}

/// The trace context of the span that wrote the event travels in the headers of the
/// outbox row and of the NATS message; an event written outside any trace has none.
#[tokio::test]
async fn the_trace_context_travels_in_the_headers() {
    let (_guard, _provider) = crate::otel_tracing();
    let env = Env::new().await;
    let traced = event("live");
    let untraced = event("ended");

    let span = tracing::info_span!("request");
    let trace_id = crate::trace_id_of(&span);
    assert_eq!(trace_id.len(), 32);
    env.enqueue(std::slice::from_ref(&traced))
        .instrument(span)
        .await;
    env.enqueue(std::slice::from_ref(&untraced)).await;

    let row_headers: serde_json::Value = env
        .sql
        .query_one("SELECT headers FROM outbox WHERE id = $1", &[&traced.id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(row_headers["Ipelya-Event-Type"], "session.live");
    let traceparent = row_headers["traceparent"].as_str().expect("traceparent");
    assert_eq!(
        bus::trace::trace_id(&[("traceparent".to_owned(), traceparent.to_owned())].into()),
        Some(trace_id.clone())
    );

    relay::flush(&env.db.pool, &env.js, Duration::from_secs(5))
        .await
        .unwrap();
    let mut by_id = std::collections::HashMap::new();
    for seq in 1..=2 {
        let m = env.stream_message(Family::Session, seq).await;
        by_id.insert(header(Some(&m.headers), "Nats-Msg-Id").unwrap(), m);
    }
    let m = &by_id[&traced.id.to_string()];
    assert_eq!(
        header(Some(&m.headers), "traceparent").as_deref(),
        Some(traceparent)
    );
    assert_eq!(
        header(Some(&m.headers), "Ipelya-Event-Type").as_deref(),
        Some("session.live")
    );
    let m = &by_id[&untraced.id.to_string()];
    assert_eq!(header(Some(&m.headers), "traceparent"), None);
    assert_eq!(
        header(Some(&m.headers), "Ipelya-Event-Type").as_deref(),
        Some("session.ended")
    );
}

/// An event too large for NATS will never be published: it is parked (kept, out of the
/// backlog) and the events around it go out.
#[tokio::test]
async fn an_event_too_large_for_nats_is_parked_and_does_not_block_the_others() {
    let env = Env::new().await;
    let mut big = event("live");
    big.payload = vec![7u8; 2 * 1024 * 1024]; // over NATS's default max_payload of 1 MiB
    let mut events = vec![event("live"), big.clone(), event("ended")];
    events.sort_by_key(|e| e.id);
    env.enqueue(&events).await;

    relay::flush(&env.db.pool, &env.js, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(env.stream_messages(Family::Session).await, 2);
    assert_eq!(env.count(PUBLISHED).await, 2);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND attempts = {} AND id = '{}'",
            relay::PARKED,
            big.id
        ))
        .await,
        1
    );
    assert_eq!(relay::backlog(&env.db.pool).await.unwrap(), 0);
    // Later relays leave it alone.
    assert_eq!(
        relay::relay_batch(&env.db.pool, &env.js, 10).await.unwrap(),
        0
    );
}
