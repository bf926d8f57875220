//! The harness shared by the notifier's tests: the notifier in-process on port 0 with its
//! own database and NATS namespace, optionally pointed at the APNs / FCM stand-ins.

#![allow(dead_code)]

use std::net::TcpListener;
use std::time::Duration;

use notifier::push::{ApnsConfig, FcmConfig, PushConfig, ServiceAccount};
use notifier::{Application, Config};
use push_sim::PushSim;
use serde_json::Value;
use testkit::TestDb;
use uuid::Uuid;
use web::config::{CommonConfig, Secret};

/// A running notifier. Dropping it stops it too (the stop sender goes away).
pub struct Notifier {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Notifier {
    /// Stops gracefully: no new requests, consumers stopped, outbox flushed.
    pub async fn stop(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The push configuration that points the notifier at the stand-ins (both providers on).
pub fn push_config(sim: &PushSim) -> PushConfig {
    let a = sim.apns.credentials();
    PushConfig {
        apns: Some(ApnsConfig {
            url: sim.apns.url().to_owned(),
            key_id: a.key_id.clone(),
            team_id: a.team_id.clone(),
            topic: a.topic.clone(),
            key_pem: Secret::new(a.keys.private_pem.clone()),
        }),
        fcm: Some(FcmConfig {
            url: sim.fcm.url().to_owned(),
            project_id: sim.fcm.credentials().project_id.clone(),
            service_account: ServiceAccount::from_json(
                &sim.fcm.credentials().service_account_json(),
            )
            .expect("service account"),
        }),
        ..PushConfig::default()
    }
}

/// Starts the notifier on `127.0.0.1:0` against `db` and namespace `ns`, with `push`
/// (`PushConfig::default()` = log mode, `push_config(&sim)` = the stand-ins). Returns its
/// base URL and the stop handle.
pub async fn spawn_notifier(db: &TestDb, ns: &str, push: PushConfig) -> Notifier {
    telemetry::install_crypto_providers();
    let mut common = CommonConfig::for_tests(
        "notifier",
        &db.url,
        &testkit::nats_url(),
        ns,
        testkit::JWT_SECRET,
    );
    common.db_pool_size = 3;
    let config = Config {
        common,
        push,
        stream: notifier::stream::StreamConfig::from_env().expect("stream config"),
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let app = Application::build_with_listener(config, listener)
        .await
        .expect("notifier starts");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async move {
                let _ = rx.await;
            })
            .await;
    });
    Notifier {
        url,
        stop: Some(tx),
        task: Some(task),
    }
}

/// A test world: database, namespace, stand-ins (when asked for), the notifier.
pub struct World {
    pub db: TestDb,
    pub ns: String,
    pub sim: Option<PushSim>,
    pub notifier: Notifier,
    pub http: reqwest::Client,
    sql: tokio::sync::OnceCell<tokio_postgres::Client>,
}

/// The notifier in `log` mode (no providers).
pub async fn log_mode() -> World {
    world_with(false, |_| {}).await
}

/// The notifier against both stand-ins.
pub async fn with_providers() -> World {
    world_with(true, |_| {}).await
}

/// As `with_providers`, with the push configuration adjusted.
pub async fn world_with(providers: bool, adjust: impl FnOnce(&mut PushConfig)) -> World {
    let db = TestDb::new().await;
    let ns = testkit::namespace();
    let sim = if providers {
        Some(PushSim::start().await.expect("push-sim"))
    } else {
        None
    };
    let mut push = sim.as_ref().map(push_config).unwrap_or_default();
    adjust(&mut push);
    let notifier = spawn_notifier(&db, &ns, push).await;
    World {
        db,
        ns,
        sim,
        notifier,
        http: reqwest::Client::new(),
        sql: tokio::sync::OnceCell::new(),
    }
}

pub fn ios_token() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

pub fn fcm_token() -> String {
    format!(
        "fcm:{}_{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    )
}

impl World {
    pub fn sim(&self) -> &PushSim {
        self.sim.as_ref().expect("stand-ins started")
    }

    pub fn subjects(&self) -> bus::Subjects {
        bus::Subjects::new(self.ns.clone())
    }

    /// One SQL connection for the assertions.
    pub async fn sql(&self) -> &tokio_postgres::Client {
        self.sql.get_or_init(|| self.db.sql()).await
    }

    pub async fn user(&self, name: &str) -> Uuid {
        testkit::profile(
            &self.db,
            &format!("{name}_{}", &Uuid::new_v4().simple().to_string()[..8]),
            false,
            None,
        )
        .await
    }

    /// A user with this exact username.
    pub async fn named_user(&self, name: &str) -> Uuid {
        testkit::profile(&self.db, name, false, None).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.notifier.url)
    }

    /// `PUT /v1/devices` as `user`; status and body.
    pub async fn put_device(&self, user: Uuid, body: Value) -> (u16, Value) {
        let res = self
            .http
            .put(self.url("/v1/devices"))
            .bearer_auth(testkit::token_for(user))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Registers a device and checks it worked.
    pub async fn device(&self, user: Uuid, platform: &str, kind: &str, token: &str) {
        let (status, body) = self
            .put_device(
                user,
                serde_json::json!({"platform": platform, "kind": kind, "token": token}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Writes `event` to the outbox of the test database; the notifier's relay publishes it.
    pub async fn publish(&self, event: &bus::Event) {
        let mut conn = self.db.conn().await;
        bus::outbox::enqueue(&mut conn, &self.subjects(), event)
            .await
            .expect("enqueue");
    }

    /// Publishes a call change as call-signaling does.
    pub async fn call_event(
        &self,
        status: &str,
        call: Uuid,
        caller: Uuid,
        callee: Uuid,
    ) -> bus::Event {
        let payload = bus::proto::CallChanged {
            call_id: call.to_string(),
            caller_id: caller.to_string(),
            callee_id: callee.to_string(),
            call_type: "video_call".into(),
            status: status.into(),
            previous_status: String::new(),
            room_name: format!("call_video_{call}_0"),
            ended_reason: String::new(),
        };
        let event = bus::Event::new(bus::Family::Call, status, call, &payload);
        self.publish(&event).await;
        event
    }

    /// The `notify.push_result`s the notifier wrote for `call` (read from its outbox).
    pub async fn push_results(&self, call: Uuid) -> Vec<bus::proto::PushResult> {
        let subject = self.subjects().subject(bus::Family::Notify, "push_result");
        let rows = self
            .sql()
            .await
            .query(
                "SELECT payload FROM outbox WHERE subject = $1 ORDER BY id",
                &[&subject],
            )
            .await
            .unwrap();
        rows.iter()
            .filter_map(|r| {
                let bytes: Vec<u8> = r.get(0);
                let inc = bus::Incoming::decode(&subject, &bytes, 1).ok()?;
                (inc.aggregate_id == call.to_string()).then_some(inc)
            })
            .map(|inc| inc.payload::<bus::proto::PushResult>().unwrap())
            .collect()
    }

    /// Waits for the first push result of `call`.
    pub async fn push_result(&self, call: Uuid) -> bus::proto::PushResult {
        testkit::eventually(Duration::from_secs(20), "a push_result", || async {
            self.push_results(call).await.into_iter().next()
        })
        .await
    }

    /// Delivery rows of an event: (provider, push_kind, status, http_status, error).
    pub async fn deliveries(
        &self,
        event: Uuid,
    ) -> Vec<(String, String, String, Option<i32>, Option<String>)> {
        self.sql()
            .await
            .query(
                "SELECT provider, push_kind, status, http_status, error FROM push_deliveries \
                 WHERE event_id = $1 ORDER BY provider, push_kind",
                &[&event],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    }

    /// Whether the notifier marked `event` handled by `consumer`.
    pub async fn processed(&self, consumer: &str, event: Uuid) -> bool {
        self.sql()
            .await
            .query_opt(
                "SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2",
                &[&consumer, &event],
            )
            .await
            .unwrap()
            .is_some()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.sql().await.query_one(sql, &[]).await.unwrap().get(0)
    }

    pub async fn device_count(&self, token: &str) -> i64 {
        self.sql()
            .await
            .query_one(
                "SELECT count(*) FROM push_devices WHERE token = $1",
                &[&token],
            )
            .await
            .unwrap()
            .get(0)
    }
}
