use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use livekit::{Credentials, RoomGrant, WebhookEvent};
use livekit_sim::{SimConfig, SimHandle};
use serde_json::{Value, json};

pub const KEY: &str = "APItestkey";
pub const SECRET: &str = "test-secret-test-secret-test-secret";

pub fn install_providers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

pub fn creds() -> Credentials {
    Credentials::new(KEY, SECRET)
}

/// One webhook as the receiver got it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
    pub fn event(&self) -> WebhookEvent {
        livekit::parse_webhook(&self.body).expect("webhook body parses")
    }
}

#[derive(Clone, Default)]
struct ReceiverState {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Statuses to answer, in order; 200 once empty.
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

async fn receive(
    state: web::Data<ReceiverState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    state.hits.lock().unwrap().push(Hit {
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: body.to_vec(),
    });
    let status = state.statuses.lock().unwrap().pop_front().unwrap_or(200);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

pub struct TestSim {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    state: ReceiverState,
    receiver: actix_web::dev::ServerHandle,
}

impl TestSim {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut SimConfig)) -> Self {
        install_providers();
        let state = ReceiverState::default();
        let data = web::Data::new(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/hook", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let receiver = server.handle();
        tokio::spawn(server);

        let mut config = SimConfig::new(KEY, SECRET);
        config.webhook_urls = vec![format!("http://127.0.0.1:{port}/hook")];
        config.departure_timeout = Duration::from_secs(1);
        config.webhook_retry_base = Duration::from_millis(50);
        adjust(&mut config);
        let sim = livekit_sim::spawn(config, TcpListener::bind("127.0.0.1:0").unwrap())
            .await
            .unwrap();
        Self {
            sim,
            http: reqwest::Client::new(),
            state,
            receiver,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    /// Answer the next webhooks with these statuses.
    pub fn respond_with(&self, statuses: &[u16]) {
        self.state.statuses.lock().unwrap().extend(statuses);
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST /sim/join`, expecting success; returns the new sid.
    pub async fn join(&self, token: &str) -> String {
        let (status, body) = self.post("/sim/join", json!({ "token": token })).await;
        assert_eq!(status, 200, "{body}");
        body["sid"].as_str().unwrap().to_owned()
    }

    /// Waits (through the control API) until every queued webhook was delivered.
    pub async fn settle(&self) {
        for _ in 0..500 {
            if self.get("/sim/webhooks/pending").await["pending"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("webhooks still pending after 5 s");
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<WebhookEvent> {
        self.hits().iter().map(Hit::event).collect()
    }

    /// `event` or `event:participant-sid:reason` for each webhook, for compact assertions.
    pub fn names(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| match (&e.participant, e.event.as_str()) {
                (Some(p), "participant_left" | "participant_connection_aborted") => {
                    format!("{}:{}:{}", e.event, p.sid, p.disconnect_reason)
                }
                (Some(p), _) => format!("{}:{}", e.event, p.sid),
                (None, _) => e.event.clone(),
            })
            .collect()
    }

    pub async fn stop(self) {
        self.sim.stop().await;
        self.receiver.stop(false).await;
    }
}

pub fn grant(room: &str) -> RoomGrant {
    RoomGrant {
        room: room.to_owned(),
        can_publish: true,
        can_subscribe: true,
        can_publish_data: true,
        can_publish_sources: vec!["camera".into(), "microphone".into()],
        room_admin: false,
    }
}

pub fn token(identity: &str, grant: &RoomGrant) -> String {
    livekit::mint_token(
        &creds(),
        identity,
        identity,
        grant,
        Duration::from_secs(600),
    )
    .unwrap()
}

/// A server-API token with these video grants.
pub fn admin_token(grants: livekit_api::access_token::VideoGrants) -> String {
    livekit_api::access_token::AccessToken::with_api_key(KEY, SECRET)
        .with_grants(grants)
        .to_jwt()
        .unwrap()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A JWT with arbitrary claims.
pub fn raw_jwt(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}
