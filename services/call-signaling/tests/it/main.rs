//! call-signaling on real HTTP with livekit-sim → webhook-ingest → NATS for the call rooms,
//! token-issuer for the call tokens, a database and a NATS namespace of their own. The
//! notifier's answer to the incoming-call push (`notify.push_result`) is published here
//! through the outbox as the notifier would (the end-to-end test runs the real notifier).

mod concurrency;
mod crash;
mod e2e;
mod events;
mod openapi;
mod rooms;
mod routes;
mod timers;

use std::net::TcpListener;
use std::time::Duration;

use call_signaling::lifecycle::Timings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestDb;
use uuid::Uuid;
use web::config::{CommonConfig, LiveKitConfig, Secret};

pub struct Stack {
    pub db: TestDb,
    pub ns: String,
    pub http: reqwest::Client,
    pub calls: String,
    pub tokens: String,
    pub ingest: String,
    pub sim: livekit_sim::SimHandle,
    pub subjects: bus::Subjects,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sql: tokio::sync::OnceCell<tokio_postgres::Client>,
}

/// Knobs of a test stack.
#[derive(Clone)]
pub struct Options {
    pub timings: Timings,
    /// Start call-signaling in-process (the crash test runs it as a child process).
    pub call_signaling: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timings: Timings {
                push_timeout: Duration::from_secs(30),
                ring_timeout: Duration::from_secs(60),
                join_timeout: Duration::from_secs(60),
                party_grace: Duration::from_secs(2),
                max_duration: Duration::from_secs(3600),
                reconcile_every: Duration::from_secs(3600),
            },
            call_signaling: true,
        }
    }
}

pub fn livekit_config(sim_url: &str) -> LiveKitConfig {
    LiveKitConfig {
        url: sim_url.to_owned(),
        ws_url: sim_url.replace("http://", "ws://"),
        api_key: testkit::LIVEKIT_KEY.into(),
        api_secret: Secret::new(testkit::LIVEKIT_SECRET),
    }
}

pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Each service of a stack gets a small pool: PostgreSQL's 100 connections are shared by
/// every test running on the machine.
pub const POOL: usize = 3;

pub fn common(service: &'static str, db: &TestDb, ns: &str) -> CommonConfig {
    let mut c = CommonConfig::for_tests(
        service,
        &db.url,
        &testkit::nats_url(),
        ns,
        testkit::JWT_SECRET,
    );
    c.db_pool_size = POOL;
    c
}

pub async fn stack() -> Stack {
    stack_with(Options::default()).await
}

pub async fn stack_with(options: Options) -> Stack {
    telemetry::install_crypto_providers();
    let db = TestDb::new().await;
    let ns = testkit::namespace();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    let mut stopper = || {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        async move {
            let _ = rx.await;
        }
    };

    let ingest_listener = listener();
    let ingest_url = format!(
        "http://127.0.0.1:{}",
        ingest_listener.local_addr().unwrap().port()
    );
    let mut sim_config = livekit_sim::SimConfig::new(testkit::LIVEKIT_KEY, testkit::LIVEKIT_SECRET);
    sim_config.webhook_urls = vec![format!("{ingest_url}/webhooks/livekit")];
    sim_config.departure_timeout = Duration::from_secs(1);
    sim_config.webhook_retry_base = Duration::from_millis(50);
    let sim = livekit_sim::spawn(sim_config, listener()).await.unwrap();
    let lk = livekit_config(sim.base_url());

    let ingest = webhook_ingest::Application::build_with_listener(
        webhook_ingest::Config {
            common: common("webhook-ingest", &db, &ns),
            livekit: lk.clone(),
        },
        ingest_listener,
    )
    .await
    .unwrap();
    let stop = stopper();
    tasks.push(tokio::spawn(async move {
        let _ = ingest.run_until_stopped(stop).await;
    }));

    let tokens = token_issuer::Application::build_with_listener(
        token_issuer::Config {
            common: common("token-issuer", &db, &ns),
            livekit: lk.clone(),
            token_ttl: Duration::from_secs(3600),
            rate_user_per_min: 100_000,
            rate_ip_per_min: 1_000_000,
            creator_share_percent: 70,
        },
        listener(),
    )
    .await
    .unwrap();
    let tokens_url = format!("http://127.0.0.1:{}", tokens.port());
    let stop = stopper();
    tasks.push(tokio::spawn(async move {
        let _ = tokens.run_until_stopped(stop).await;
    }));

    let calls_url = if options.call_signaling {
        let app = call_signaling::Application::build_with_listener(
            cs_config(&db, &ns, sim.base_url(), &options.timings),
            listener(),
        )
        .await
        .unwrap();
        let url = format!("http://127.0.0.1:{}", app.port());
        let stop = stopper();
        tasks.push(tokio::spawn(async move {
            let _ = app.run_until_stopped(stop).await;
        }));
        url
    } else {
        String::new()
    };

    Stack {
        db,
        subjects: bus::Subjects::new(ns.clone()),
        ns,
        http: reqwest::Client::new(),
        calls: calls_url,
        tokens: tokens_url,
        ingest: ingest_url,
        sim,
        stops,
        tasks,
        sql: tokio::sync::OnceCell::new(),
    }
}

pub fn cs_config(
    db: &TestDb,
    ns: &str,
    sim_url: &str,
    timings: &Timings,
) -> call_signaling::Config {
    call_signaling::Config {
        common: common("call-signaling", db, ns),
        livekit: livekit_config(sim_url),
        timings: timings.clone(),
    }
}

impl Stack {
    pub async fn request(
        &self,
        method: reqwest::Method,
        url: String,
        user: Uuid,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(testkit::token_for(user));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A request with full control of the header and the body.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        url: String,
        authorization: Option<String>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, url);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn user(&self, name: &str) -> Uuid {
        let unique = format!("{name}_{}", &Uuid::new_v4().simple().to_string()[..8]);
        testkit::profile(&self.db, &unique, false, None).await
    }

    /// `POST /v1/calls`.
    pub async fn initiate(
        &self,
        caller: Uuid,
        callee: Uuid,
        call_type: &str,
    ) -> (StatusCode, Value) {
        self.request(
            reqwest::Method::POST,
            format!("{}/v1/calls", self.calls),
            caller,
            Some(json!({"calleeId": callee, "callType": call_type})),
        )
        .await
    }

    /// Starts a video call and returns its id (status `initiated`).
    pub async fn start_call(&self, caller: Uuid, callee: Uuid) -> Uuid {
        let (status, body) = self.initiate(caller, callee, "video_call").await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["call"]["status"], json!("initiated"), "{body}");
        body["call"]["id"].as_str().unwrap().parse().unwrap()
    }

    /// Publishes the notifier's answer to the incoming-call push, as the notifier does
    /// (through the outbox; the services' relay publishes it).
    pub async fn push_result(
        &self,
        call: Uuid,
        callee: Uuid,
        delivered: bool,
        devices: i32,
        error: &str,
    ) {
        let payload = bus::proto::PushResult {
            user_id: callee.to_string(),
            ref_id: call.to_string(),
            purpose: "incoming_call".into(),
            delivered,
            devices,
            error: error.into(),
        };
        let event = bus::Event::new(bus::Family::Notify, "push_result", call, &payload);
        let mut conn = self.db.conn().await;
        bus::outbox::enqueue(&mut conn, &self.subjects, &event)
            .await
            .unwrap();
    }

    /// A call that rings: initiated, and its push delivered.
    pub async fn ringing_call(&self, caller: Uuid, callee: Uuid) -> Uuid {
        let id = self.start_call(caller, callee).await;
        self.push_result(id, callee, true, 1, "").await;
        self.wait_status(caller, id, "ringing").await;
        id
    }

    /// A call that was accepted.
    pub async fn accepted_call(&self, caller: Uuid, callee: Uuid) -> Uuid {
        let id = self.ringing_call(caller, callee).await;
        let (status, body) = self.act(callee, id, "accept").await;
        assert_eq!(status, 200, "{body}");
        id
    }

    /// `POST /v1/calls/{id}/<action>`.
    pub async fn act(&self, user: Uuid, call: Uuid, action: &str) -> (StatusCode, Value) {
        self.request(
            reqwest::Method::POST,
            format!("{}/v1/calls/{call}/{action}", self.calls),
            user,
            None,
        )
        .await
    }

    pub async fn get_call(&self, user: Uuid, call: Uuid) -> (StatusCode, Value) {
        self.request(
            reqwest::Method::GET,
            format!("{}/v1/calls/{call}", self.calls),
            user,
            None,
        )
        .await
    }

    /// The call as `user` sees it.
    pub async fn call(&self, user: Uuid, call: Uuid) -> Value {
        let (status, body) = self.get_call(user, call).await;
        assert_eq!(status, 200, "{body}");
        body["call"].clone()
    }

    /// Waits until the call has `status`.
    pub async fn wait_status(&self, user: Uuid, call: Uuid, status: &str) -> Value {
        testkit::eventually(
            Duration::from_secs(20),
            &format!("the call to be {status}"),
            || async {
                let c = self.call(user, call).await;
                (c["status"] == json!(status)).then_some(c)
            },
        )
        .await
    }

    /// A LiveKit token for the call from token-issuer.
    pub async fn call_token(&self, user: Uuid, call: Uuid) -> (StatusCode, Value) {
        self.request(
            reqwest::Method::POST,
            format!("{}/v1/tokens", self.tokens),
            user,
            Some(json!({"callId": call})),
        )
        .await
    }

    /// Joins the sim with the user's call token; returns the participant sid.
    pub async fn join(&self, user: Uuid, call: Uuid) -> String {
        let (status, body) = self.call_token(user, call).await;
        assert_eq!(status, 200, "{body}");
        let res = self
            .http
            .post(format!("{}/sim/join", self.sim.base_url()))
            .json(&json!({"token": body["token"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["sid"].as_str().unwrap().to_owned()
    }

    /// `leave` (on purpose) or `drop` (abrupt) in the sim.
    pub async fn sim(&self, action: &str, room: &str, identity: Uuid) {
        let res = self
            .http
            .post(format!("{}/sim/{action}", self.sim.base_url()))
            .json(&json!({"room": room, "identity": identity.to_string()}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "sim {action}: {}", res.status());
    }

    /// The names of the rooms the sim has.
    pub async fn sim_rooms(&self) -> Vec<String> {
        let rooms: Value = self
            .http
            .get(format!("{}/sim/rooms", self.sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rooms["rooms"]
            .as_array()
            .or(rooms.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn count(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> i64 {
        self.sql()
            .await
            .query_one(sql, params)
            .await
            .unwrap()
            .get(0)
    }

    pub async fn sql(&self) -> &tokio_postgres::Client {
        self.sql.get_or_init(|| self.db.sql()).await
    }

    /// How many `call.<event>` events about `call` were written (the envelope carries the
    /// call id as its aggregate id).
    pub async fn events(&self, call: Uuid, event: &str) -> i64 {
        let subject = self.subjects.subject(bus::Family::Call, event);
        self.count(
            "SELECT count(*) FROM outbox WHERE subject = $1 \
             AND position(convert_to($2, 'UTF8') in payload) > 0",
            &[&subject, &call.to_string()],
        )
        .await
    }

    /// Stops every service and waits until they gave their connections back.
    pub async fn shutdown(mut self) {
        self.stops.clear();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }
}

/// Asserts an error answer: the status and the envelope `{"success":false,"error","errorCode"}`.
#[track_caller]
pub fn assert_error(status: StatusCode, body: &Value, expected: u16, code: &str) {
    assert_eq!(status.as_u16(), expected, "{body}");
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["errorCode"], json!(code), "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error message: {body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(3),
        "the envelope and nothing else: {body}"
    );
}
