//! session-manager end to end: livekit-sim → webhook-ingest → NATS → session-manager, with
//! token-issuer for the tokens, all on real HTTP, a database and a NATS namespace of their own.

mod chat;
mod crash;
mod e2e;
mod gifts;
mod money;
mod openapi;
mod ordering;
mod reconcile;
mod routes;
mod stage;
mod stage_e2e;

use std::net::TcpListener;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use session_manager::lifecycle::Timings;
use testkit::TestDb;
use uuid::Uuid;
use web::config::{CommonConfig, LiveKitConfig, Secret};

pub struct Stack {
    pub db: TestDb,
    pub ns: String,
    pub http: reqwest::Client,
    pub sessions: String,
    pub tokens: String,
    pub ingest: String,
    pub sim: livekit_sim::SimHandle,
    pub creds: livekit::Credentials,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// One SQL connection for the assertions (polling opens no new connection each time).
    sql: tokio::sync::OnceCell<tokio_postgres::Client>,
}

/// Knobs of a test stack.
#[derive(Clone)]
pub struct Options {
    pub timings: Timings,
    /// Start session-manager in-process (crash tests run it as a child process instead).
    pub session_manager: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timings: Timings {
                host_grace: Duration::from_secs(2),
                no_show: Duration::from_secs(600),
                max_duration: Duration::from_secs(3600),
                orphan_after: Duration::from_secs(1800),
                reconcile_every: Duration::from_secs(3600),
            },
            session_manager: true,
        }
    }
}

fn livekit_config(sim_url: &str) -> LiveKitConfig {
    LiveKitConfig {
        url: sim_url.to_owned(),
        ws_url: sim_url.replace("http://", "ws://"),
        api_key: testkit::LIVEKIT_KEY.into(),
        api_secret: Secret::new(testkit::LIVEKIT_SECRET),
    }
}

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// PostgreSQL allows 100 connections for every test running on the machine: each service
/// of a stack gets a small pool.
pub const SERVICE_POOL: usize = 3;
pub const SESSION_MANAGER_POOL: usize = 4;

fn common(service: &'static str, db: &TestDb, ns: &str) -> CommonConfig {
    let mut c = CommonConfig::for_tests(
        service,
        &db.url,
        &testkit::nats_url(),
        ns,
        testkit::JWT_SECRET,
    );
    c.db_pool_size = if service == "session-manager" {
        SESSION_MANAGER_POOL
    } else {
        SERVICE_POOL
    };
    c
}

pub async fn stack() -> Stack {
    stack_with(Options::default()).await
}

pub async fn stack_with(options: Options) -> Stack {
    telemetry::install_crypto_providers();
    let db = TestDb::new().await;
    let ns = testkit::namespace();
    // Each service runs until its stop sender is dropped (with the `Stack`): then it shuts
    // down gracefully and gives its database connections back, so a test that builds
    // several stacks one after the other does not hold every pool at once.
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

    let sessions_url = if options.session_manager {
        let sm = session_manager::Application::build_with_listener(
            sm_config(&db, &ns, sim.base_url(), &options),
            listener(),
        )
        .await
        .unwrap();
        let url = format!("http://127.0.0.1:{}", sm.port());
        let stop = stopper();
        tasks.push(tokio::spawn(async move {
            let _ = sm.run_until_stopped(stop).await;
        }));
        url
    } else {
        String::new()
    };

    Stack {
        db,
        ns,
        http: reqwest::Client::new(),
        sessions: sessions_url,
        tokens: tokens_url,
        ingest: ingest_url,
        sim,
        creds: livekit::Credentials::new(testkit::LIVEKIT_KEY, testkit::LIVEKIT_SECRET),
        stops,
        tasks,
        sql: tokio::sync::OnceCell::new(),
    }
}

pub fn sm_config(
    db: &TestDb,
    ns: &str,
    sim_url: &str,
    options: &Options,
) -> session_manager::Config {
    session_manager::Config {
        common: common("session-manager", db, ns),
        livekit: livekit_config(sim_url),
        timings: options.timings.clone(),
        max_guests_video: 3,
        max_speakers_audio: 10,
        stage_ttl: Duration::from_secs(60),
        chat_rate_per_min: 20,
        gift_share_percent: 70,
    }
}

impl Stack {
    pub async fn call(
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

    pub async fn create_session(&self, creator: Uuid, body: Value) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            format!("{}/v1/sessions", self.sessions),
            creator,
            Some(body),
        )
        .await
    }

    /// Creates a public video session and returns its id.
    pub async fn public_session(&self, creator: Uuid) -> Uuid {
        let (status, body) = self
            .create_session(
                creator,
                json!({"sessionType": "video_live", "title": "Live now", "accessType": "public"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["session"]["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn session(&self, user: Uuid, id: Uuid) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                format!("{}/v1/sessions/{id}", self.sessions),
                user,
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["session"].clone()
    }

    /// Gets a LiveKit token from token-issuer.
    pub async fn token(&self, user: Uuid, session: Uuid) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                format!("{}/v1/tokens", self.tokens),
                user,
                Some(json!({"sessionId": session})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Joins the sim with a token; returns the participant sid.
    pub async fn join(&self, token: &str) -> String {
        let res = self
            .http
            .post(format!("{}/sim/join", self.sim.base_url()))
            .json(&json!({"token": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["sid"].as_str().unwrap().to_owned()
    }

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

    pub async fn sim_rooms(&self) -> Value {
        self.http
            .get(format!("{}/sim/rooms", self.sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn faults(&self, faults: Value) {
        let res = self
            .http
            .post(format!("{}/sim/faults", self.sim.base_url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }

    /// Waits until the session satisfies `pred`.
    pub async fn wait_session(
        &self,
        viewer: Uuid,
        id: Uuid,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        testkit::eventually(Duration::from_secs(20), what, || async {
            let s = self.session(viewer, id).await;
            pred(&s).then_some(s)
        })
        .await
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

    /// The stack's SQL connection for assertions.
    pub async fn sql(&self) -> &tokio_postgres::Client {
        self.sql.get_or_init(|| self.db.sql()).await
    }

    /// Stops every service and waits until they gave their connections back.
    pub async fn shutdown(mut self) {
        self.stops.clear();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    pub fn stop(&mut self) {
        self.stops.clear();
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

/// Inserts a profile with a given id (the same users in several databases).
pub async fn profile_with_id(db: &TestDb, id: Uuid, username: &str, is_creator: bool) {
    db.sql()
        .await
        .execute(
            "INSERT INTO profiles (id, username, is_creator) VALUES ($1, $2, $3)",
            &[&id, &username, &is_creator],
        )
        .await
        .expect("insert profile");
}

/// A port nobody listens on right now (for a child process to bind).
pub fn free_port() -> u16 {
    listener().local_addr().unwrap().port()
}

impl Stack {
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

    /// Signs a LiveKit webhook body as LiveKit does and posts it to webhook-ingest.
    pub async fn post_webhook(&self, event: &Value) -> Value {
        let bytes = serde_json::to_vec(event).unwrap();
        let token = livekit::sign_webhook(&self.creds, &bytes);
        let res = self
            .http
            .post(format!("{}/webhooks/livekit", self.ingest))
            .header("content-type", "application/webhook+json")
            .header("authorization", token)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "webhook refused: {body}");
        body
    }

    /// LiveKit events session-manager has handled (`processed_events` of its consumer).
    pub async fn processed_livekit_events(&self) -> i64 {
        self.count(
            "SELECT count(*) FROM processed_events WHERE consumer = $1",
            &[&session_manager::presence::CONSUMER],
        )
        .await
    }

    /// Waits until every stored webhook (`webhook_events`) has been handled by
    /// session-manager, and stays so for a moment.
    pub async fn wait_webhooks_handled(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut quiet_since: Option<tokio::time::Instant> = None;
        loop {
            let stored = self.count("SELECT count(*) FROM webhook_events", &[]).await;
            let handled = self.processed_livekit_events().await;
            if stored == handled {
                let since = *quiet_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= Duration::from_millis(300) {
                    return;
                }
            } else {
                quiet_since = None;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for session-manager to handle every stored webhook ({handled} of {stored})"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A RoomService client with full grants (what an operator or LiveKit's CLI would use).
    pub fn rooms(&self) -> livekit::LiveKitRooms {
        livekit::LiveKitRooms::new(self.sim.base_url(), &self.creds)
    }

    /// Creates a session of `session_type` and makes it live: the host joins the sim.
    pub async fn live_session(&self, creator: Uuid, session_type: &str) -> Uuid {
        let (status, body) = self
            .create_session(
                creator,
                json!({"sessionType": session_type, "title": "Live now", "accessType": "public"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let id: Uuid = body["session"]["id"].as_str().unwrap().parse().unwrap();
        self.join(&self.token(creator, id).await).await;
        self.wait_session(creator, id, "the session to go live", |s| {
            s["status"] == json!("live")
        })
        .await;
        id
    }
}
