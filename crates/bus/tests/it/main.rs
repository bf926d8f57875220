//! The bus against the real PostgreSQL and NATS JetStream: the outbox and its relay, the
//! idempotent consumer, the durable deadlines. Every test has a database and a NATS
//! namespace of its own, so the tests run in parallel; nothing is mocked.

mod consumer;
mod deadlines;
mod outbox;
mod streams;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, message::StreamMessage};
use bus::{Event, Family, Subjects, proto};
use diesel_async::AsyncConnection;
use futures_util::StreamExt;
use testkit::TestDb;
use tokio::sync::watch;
use uuid::Uuid;

/// How long a test waits for something that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(10);

/// One test's world: its database, its NATS namespace and connections to both.
pub struct Env {
    pub db: TestDb,
    pub subjects: Subjects,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// For assertions in plain SQL.
    pub sql: tokio_postgres::Client,
}

impl Env {
    /// A database and a namespace whose streams exist.
    pub async fn new() -> Env {
        let env = Env::without_streams().await;
        env.subjects.ensure_streams(&env.js).await.expect("streams");
        env
    }

    /// A database and a namespace with no stream yet (what a relay sees before the
    /// streams are created, or when JetStream does not answer).
    pub async fn without_streams() -> Env {
        let db = TestDb::new().await;
        let subjects = Subjects::new(testkit::namespace());
        let (client, js) = bus::connect(&testkit::nats_url()).await.expect("NATS");
        let sql = db.sql().await;
        Env {
            db,
            subjects,
            client,
            js,
            sql,
        }
    }

    /// A second connection to NATS (another replica).
    pub async fn other_js(&self) -> jetstream::Context {
        bus::connect(&testkit::nats_url()).await.expect("NATS").1
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.sql
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Waits until `sql` counts `want`; panics with the last count otherwise.
    pub async fn wait_count(&self, what: &str, sql: &str, want: i64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let got = self.count(sql).await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: waited {PATIENCE:?} for {want}, have {got}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Writes the events to the outbox in one committed transaction.
    pub async fn enqueue(&self, events: &[Event]) {
        let mut conn = self.db.conn().await;
        let subjects = &self.subjects;
        conn.transaction::<(), diesel::result::Error, _>(async |c| {
            bus::outbox::enqueue_all(c, subjects, events).await
        })
        .await
        .expect("enqueue");
    }

    /// How many messages the family's stream holds.
    pub async fn stream_messages(&self, family: Family) -> u64 {
        let mut stream = self
            .js
            .get_stream(self.subjects.stream(family))
            .await
            .expect("stream");
        stream.info().await.expect("stream info").state.messages
    }

    /// The stream's message at `sequence` (1-based), headers included.
    pub async fn stream_message(&self, family: Family, sequence: u64) -> StreamMessage {
        self.js
            .get_stream(self.subjects.stream(family))
            .await
            .expect("stream")
            .get_raw_message(sequence)
            .await
            .unwrap_or_else(|e| panic!("message {sequence}: {e}"))
    }

    pub async fn consumer_info(&self, family: Family, name: &str) -> jetstream::consumer::Info {
        let mut consumer = self
            .js
            .get_stream(self.subjects.stream(family))
            .await
            .expect("stream")
            .get_consumer::<pull::Config>(name)
            .await
            .expect("consumer");
        consumer.info().await.expect("consumer info").clone()
    }

    /// Publishes the event straight to JetStream (not through the outbox), with the given
    /// `Nats-Msg-Id`, and waits for the acknowledgement.
    pub async fn publish(&self, event: &Event, msg_id: &str) {
        self.publish_raw(&event.subject(&self.subjects), msg_id, event.encode())
            .await;
    }

    pub async fn publish_raw(&self, subject: &str, msg_id: &str, body: Vec<u8>) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        self.js
            .publish_with_headers(subject.to_owned(), headers, body.into())
            .await
            .expect("publish")
            .await
            .expect("JetStream acknowledgement");
    }

    /// Listens on `subject` with core NATS: sees every publish, duplicates included,
    /// whatever JetStream keeps.
    pub async fn tap(&self, subject: String) -> Tap {
        let mut subscriber = self.client.subscribe(subject).await.expect("subscribe");
        // The server has the subscription once it answered the ping.
        self.client.flush().await.expect("flush");
        let messages: Arc<Mutex<Vec<async_nats::Message>>> = Arc::default();
        let sink = messages.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = subscriber.next().await {
                sink.lock().unwrap().push(m);
            }
        });
        Tap { messages, task }
    }
}

/// Messages seen on a core NATS subscription.
pub struct Tap {
    messages: Arc<Mutex<Vec<async_nats::Message>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tap {
    fn len(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn messages(&self) -> Vec<async_nats::Message> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until exactly `want` messages arrived, then a little longer to see that no
    /// more come.
    pub async fn expect(&self, what: &str, want: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.len() < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: waited {PATIENCE:?} for {want} messages, have {}",
                self.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(self.len(), want, "{what}: more messages than expected");
    }
}

/// A header of a NATS message as text.
pub fn header(headers: Option<&async_nats::HeaderMap>, name: &str) -> Option<String> {
    headers
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

/// A `session.<name>` event about a new session.
pub fn event(name: &str) -> Event {
    let session = Uuid::new_v4();
    Event::new(
        Family::Session,
        name,
        session,
        &proto::SessionChanged {
            session_id: session.to_string(),
            status: name.to_owned(),
            ..Default::default()
        },
    )
}

pub fn shutdown_signal() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Stops a background task through its shutdown signal and waits until it returned.
pub async fn stop(tx: &watch::Sender<bool>, handles: Vec<tokio::task::JoinHandle<()>>) {
    tx.send(true).expect("someone listens");
    for h in handles {
        tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .expect("stopped in time")
            .expect("did not panic");
    }
}

/// Installs, for the current thread, a subscriber that builds OpenTelemetry spans (as
/// `telemetry::init` does in the services, without an exporter). The tests using it run on
/// the current-thread runtime, so every task they spawn sees it too.
pub fn otel_tracing() -> (
    tracing::subscriber::DefaultGuard,
    opentelemetry_sdk::trace::SdkTracerProvider,
) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bus-tests")));
    (tracing::subscriber::set_default(subscriber), provider)
}

/// The OpenTelemetry trace id of a span, as in a `traceparent` header.
pub fn trace_id_of(span: &tracing::Span) -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.context().span().span_context().trace_id().to_string()
}
