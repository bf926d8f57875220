//! The whole-stack harness: livekit-sim → webhook-ingest → NATS → session-manager, with
//! token-issuer for the tokens and moderation in front, all on real HTTP, in a database and
//! a NATS namespace of their own. Shared by every test module of moderation (the
//! dashboard's included): `support::stack()` or `support::stack_with(options)`.

use std::net::TcpListener;
use std::sync::Arc;
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
    /// Base URLs of the services.
    pub moderation: String,
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

/// Edits moderation's configuration before it starts (quotas, alert target, ...).
pub type ConfigureModeration = Arc<dyn Fn(&mut moderation::Config) + Send + Sync>;

/// Knobs of a test stack.
#[derive(Clone)]
pub struct Options {
    pub timings: Timings,
    pub moderation: ConfigureModeration,
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
            moderation: Arc::new(|_| {}),
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

/// PostgreSQL allows 100 connections for every test running on the machine: each service
/// of a stack gets a small pool.
pub const SERVICE_POOL: usize = 2;

pub fn common(service: &'static str, db: &TestDb, ns: &str) -> CommonConfig {
    let mut c = CommonConfig::for_tests(
        service,
        &db.url,
        &testkit::nats_url(),
        ns,
        testkit::JWT_SECRET,
    );
    c.db_pool_size = if service == "session-manager" {
        3
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
    // down gracefully and gives its database connections back.
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

    let sm = session_manager::Application::build_with_listener(
        sm_config(&db, &ns, sim.base_url(), &options),
        listener(),
    )
    .await
    .unwrap();
    let sessions_url = format!("http://127.0.0.1:{}", sm.port());
    let stop = stopper();
    tasks.push(tokio::spawn(async move {
        let _ = sm.run_until_stopped(stop).await;
    }));

    let mut mc = moderation::Config::for_tests(common("moderation", &db, &ns), lk.clone());
    mc.alerts.token_metrics_urls = vec![format!("{tokens_url}/metrics")];
    (options.moderation)(&mut mc);
    let md = moderation::Application::build_with_listener(mc, listener())
        .await
        .unwrap();
    let moderation_url = format!("http://127.0.0.1:{}", md.port());
    let stop = stopper();
    tasks.push(tokio::spawn(async move {
        let _ = md.run_until_stopped(stop).await;
    }));

    Stack {
        db,
        ns,
        http: reqwest::Client::new(),
        moderation: moderation_url,
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
        chat_rate_per_min: 1000,
        gift_share_percent: 70,
    }
}

impl Stack {
    /// A request as `user` (a bearer token for them) with an optional JSON body.
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

    /// A moderation request: `path` is relative to moderation's base URL (`/v1/ops/...`).
    pub async fn md(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Uuid,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, format!("{}{path}", self.moderation), user, body)
            .await
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

    /// A user (`role` `None`, `user`, `admin` or `ops`).
    pub async fn user(&self, name: &str, is_creator: bool, role: Option<&str>) -> Uuid {
        let unique = format!("{name}_{}", &Uuid::new_v4().simple().to_string()[..8]);
        testkit::profile(&self.db, &unique, is_creator, role).await
    }

    /// An operator (`profiles.role = 'ops'`).
    pub async fn operator(&self) -> Uuid {
        self.user("ops", false, Some("ops")).await
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

    /// Creates a public video session (status `created`) and returns its id.
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

    /// The session as session-manager answers it.
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

    /// Asks token-issuer for a LiveKit token: the status and the body.
    pub async fn try_token(&self, user: Uuid, session: Uuid) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            format!("{}/v1/tokens", self.tokens),
            user,
            Some(json!({"sessionId": session})),
        )
        .await
    }

    /// A LiveKit token from token-issuer (which must grant it).
    pub async fn token(&self, user: Uuid, session: Uuid) -> String {
        let (status, body) = self.try_token(user, session).await;
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

    /// Gets a token for `user` and joins the session's room; waits until session-manager
    /// counts them as an active participant.
    pub async fn join_session(&self, user: Uuid, session: Uuid) -> String {
        let sid = self.join(&self.token(user, session).await).await;
        testkit::eventually(
            Duration::from_secs(20),
            "the participant to be active",
            || async { (self.is_active(session, user).await).then_some(()) },
        )
        .await;
        sid
    }

    /// Whether `user` has an active presence row in `session`.
    pub async fn is_active(&self, session: Uuid, user: Uuid) -> bool {
        self.count(
            "SELECT count(*) FROM live_participants WHERE session_id = $1 AND user_id = $2 AND is_active",
            &[&session, &user],
        )
        .await
            > 0
    }

    /// `POST /sim/<action>` (`leave`, `drop`) for `identity` in `room`.
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

    /// `GET /sim/rooms`.
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

    /// The identities LiveKit (the sim) has in `room` right now; `None` when the room is gone.
    pub async fn room_identities(&self, room: &str) -> Option<Vec<String>> {
        use livekit::RoomService;
        let rooms = self.rooms();
        let existing = rooms.list_rooms(&[room.to_owned()]).await.unwrap();
        if existing.is_empty() {
            return None;
        }
        let mut ids: Vec<String> = rooms
            .list_participants(room)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.identity)
            .collect();
        ids.sort();
        Some(ids)
    }

    /// A RoomService client with full grants.
    pub fn rooms(&self) -> livekit::LiveKitRooms {
        livekit::LiveKitRooms::new(self.sim.base_url(), &self.creds)
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

    /// Events of moderation's outbox with this type (`moderation.kick`, ...).
    pub async fn outbox_events(&self, event_type: &str) -> i64 {
        self.count(
            "SELECT count(*) FROM outbox WHERE headers->>'Ipelya-Event-Type' = $1",
            &[&event_type],
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
