//! token-issuer over real HTTP, against a real database of its own.

mod calls;
mod openapi;
mod sessions;
mod validation;

use std::net::TcpListener;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestDb;
use token_issuer::{Application, Config};
use uuid::Uuid;
use web::config::{CommonConfig, LiveKitConfig, Secret};

pub struct TestApp {
    pub url: String,
    pub db: TestDb,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub struct Limits {
    pub per_user: u32,
    pub per_ip: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_user: 1000,
            per_ip: 100_000,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Limits::default()).await
}

pub async fn spawn_app_with(limits: Limits) -> TestApp {
    telemetry::install_crypto_providers();
    let db = TestDb::new().await;
    let config = Config {
        common: CommonConfig::for_tests(
            "token-issuer",
            &db.url,
            &testkit::nats_url(),
            &testkit::namespace(),
            testkit::JWT_SECRET,
        ),
        livekit: LiveKitConfig {
            url: "http://127.0.0.1:7880".into(),
            ws_url: "ws://127.0.0.1:7880".into(),
            api_key: testkit::LIVEKIT_KEY.into(),
            api_secret: Secret::new(testkit::LIVEKIT_SECRET),
        },
        token_ttl: Duration::from_secs(3600),
        rate_user_per_min: limits.per_user,
        rate_ip_per_min: limits.per_ip,
        creator_share_percent: 70,
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = Application::build_with_listener(config, listener)
        .await
        .expect("app builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        url,
        db,
        http: reqwest::Client::new(),
        _stop: tx,
    }
}

impl TestApp {
    /// `POST /v1/tokens` as `user` with `body`.
    pub async fn token(&self, user: Uuid, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}/v1/tokens", self.url))
            .bearer_auth(testkit::token_for(user))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn session_token(&self, user: Uuid, session: Uuid) -> (StatusCode, Value) {
        self.token(user, json!({ "sessionId": session })).await
    }

    /// Inserts a session and returns its id.
    pub async fn session(
        &self,
        creator: Uuid,
        session_type: &str,
        access: &str,
        price: Option<i64>,
        status: &str,
    ) -> Uuid {
        let id = Uuid::now_v7();
        let prefix = if session_type == "video_live" {
            "live_video"
        } else {
            "audio_room"
        };
        let ended = status == "ended";
        self.db
            .sql()
            .await
            .execute(
                "INSERT INTO live_sessions (id, creator_id, session_type, title, access_type, price_coins, status, room_name, ended_at, end_reason)
                 VALUES ($1, $2, $3, 'a title', $4, $5, $6, $7, CASE WHEN $8 THEN now() END, CASE WHEN $8 THEN 'host_ended' END)",
                &[&id, &creator, &session_type, &access, &price, &status, &format!("{prefix}_{id}"), &ended],
            )
            .await
            .unwrap();
        id
    }

    pub async fn exec(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> u64 {
        self.db.sql().await.execute(sql, params).await.unwrap()
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
}

/// Decodes a LiveKit token as a LiveKit server would.
pub fn claims(body: &Value) -> livekit::AccessClaims {
    let creds = livekit::Credentials::new(testkit::LIVEKIT_KEY, testkit::LIVEKIT_SECRET);
    livekit::verify_access_token(&creds, body["token"].as_str().expect("a token"))
        .expect("LiveKit accepts it")
}

pub fn assert_error(status: StatusCode, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status.as_u16(), expected_status, "body: {body}");
    assert_eq!(body["success"], json!(false), "body: {body}");
    assert_eq!(body["errorCode"], json!(code), "body: {body}");
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
}
