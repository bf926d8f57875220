//! session-manager end to end: livekit-sim → webhook-ingest → NATS → session-manager, with
//! token-issuer for the tokens, all on real HTTP, a database and a NATS namespace of their own.

mod e2e;

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

fn common(service: &'static str, db: &TestDb, ns: &str) -> CommonConfig {
    CommonConfig::for_tests(
        service,
        &db.url,
        &testkit::nats_url(),
        ns,
        testkit::JWT_SECRET,
    )
}

pub async fn stack() -> Stack {
    stack_with(Options::default()).await
}

pub async fn stack_with(options: Options) -> Stack {
    telemetry::install_crypto_providers();
    let db = TestDb::new().await;
    let ns = testkit::namespace();
    let mut stops = Vec::new();
    let mut start = |fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = rx => {}
            }
        });
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
    start(Box::pin(async move {
        ingest
            .run_until_stopped(std::future::pending())
            .await
            .unwrap();
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
    start(Box::pin(async move {
        tokens
            .run_until_stopped(std::future::pending())
            .await
            .unwrap();
    }));

    let sessions_url = if options.session_manager {
        let sm = session_manager::Application::build_with_listener(
            sm_config(&db, &ns, sim.base_url(), &options),
            listener(),
        )
        .await
        .unwrap();
        let url = format!("http://127.0.0.1:{}", sm.port());
        start(Box::pin(async move {
            sm.run_until_stopped(std::future::pending()).await.unwrap();
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
        self.db
            .sql()
            .await
            .query_one(sql, params)
            .await
            .unwrap()
            .get(0)
    }

    pub fn stop(&mut self) {
        self.stops.clear();
    }
}
