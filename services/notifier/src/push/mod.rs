//! Push dispatch: events → pushes through APNs / FCM (or the log), every attempt logged,
//! the result of an incoming ring published as `notify.push_result`.

pub mod apns;
pub mod dispatch;
pub mod fcm;
pub mod provider;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use web::backbone::Backbone;
use web::config::Secret;
use web::server::{env_or, env_parse, env_required};

use provider::{LogProvider, Provider, Router};

/// APNs token-based auth (API.md's `APNS_*`).
#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// `APNS_URL`, default Apple's production host.
    pub url: String,
    /// `APNS_KEY_ID`: the key's id, the JWT's `kid`.
    pub key_id: String,
    /// `APNS_TEAM_ID`: the JWT's `iss`.
    pub team_id: String,
    /// `APNS_TOPIC`: the app's bundle id; VoIP pushes go to `<topic>.voip`.
    pub topic: String,
    /// The content of `APNS_KEY_FILE` (the `.p8`: PKCS#8 P-256 PEM).
    pub key_pem: Secret,
}

/// A Google service account, as its JSON file holds it (the fields we use).
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: String,
    pub private_key: Secret,
    /// Where the OAuth token comes from (Google's endpoint; the stand-in in tests).
    pub token_uri: String,
    pub project_id: Option<String>,
}

impl ServiceAccount {
    /// Parses a service-account JSON file's content.
    pub fn from_json(json: &str) -> anyhow::Result<Self> {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("FCM_CREDENTIALS_FILE is not JSON: {e}"))?;
        let field = |name: &str| {
            v.get(name)
                .and_then(|f| f.as_str())
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("FCM_CREDENTIALS_FILE: `{name}` is missing"))
        };
        Ok(ServiceAccount {
            client_email: field("client_email")?,
            private_key_id: field("private_key_id")?,
            private_key: Secret::new(field("private_key")?),
            token_uri: field("token_uri")?,
            project_id: field("project_id").ok(),
        })
    }
}

/// FCM HTTP v1 (API.md's `FCM_*`).
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// `FCM_URL`, default Google's host.
    pub url: String,
    /// `FCM_PROJECT_ID`, default the service account's `project_id`.
    pub project_id: String,
    /// From `FCM_CREDENTIALS_FILE`.
    pub service_account: ServiceAccount,
}

/// Push providers' configuration. A provider that is `None` is off; with both off the
/// notifier runs in `log` mode.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub apns: Option<ApnsConfig>,
    pub fcm: Option<FcmConfig>,
    /// `PUSH_TIMEOUT_MS` (default 5000): the bound on one provider call, token fetch
    /// included, so a slow provider cannot hold a consumer.
    pub timeout: Duration,
    /// `PUSH_CONCURRENCY` (default 64): pushes of one event in flight at once.
    pub concurrency: usize,
    /// `LIVE_PUSH_BATCH` (default 500): followers claimed and told per round of a
    /// `session.live`.
    pub live_batch: i64,
}

impl Default for PushConfig {
    /// `log` mode with the default limits.
    fn default() -> Self {
        PushConfig {
            apns: None,
            fcm: None,
            timeout: Duration::from_secs(5),
            concurrency: 64,
            live_batch: 500,
        }
    }
}

fn read_file(var: &str, path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{var}={path}: {e}"))
}

impl PushConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let apns = match std::env::var("APNS_KEY_FILE")
            .ok()
            .filter(|v| !v.is_empty())
        {
            None => None,
            Some(path) => Some(ApnsConfig {
                url: env_or("APNS_URL", "https://api.push.apple.com"),
                key_id: env_required("APNS_KEY_ID")?,
                team_id: env_required("APNS_TEAM_ID")?,
                topic: env_required("APNS_TOPIC")?,
                key_pem: Secret::new(read_file("APNS_KEY_FILE", &path)?),
            }),
        };
        let fcm = match std::env::var("FCM_CREDENTIALS_FILE")
            .ok()
            .filter(|v| !v.is_empty())
        {
            None => None,
            Some(path) => {
                let service_account =
                    ServiceAccount::from_json(&read_file("FCM_CREDENTIALS_FILE", &path)?)?;
                let project_id = match std::env::var("FCM_PROJECT_ID")
                    .ok()
                    .filter(|v| !v.is_empty())
                {
                    Some(p) => p,
                    None => service_account.project_id.clone().ok_or_else(|| {
                        anyhow::anyhow!("missing required environment variable FCM_PROJECT_ID")
                    })?,
                };
                Some(FcmConfig {
                    url: env_or("FCM_URL", "https://fcm.googleapis.com"),
                    project_id,
                    service_account,
                })
            }
        };
        Ok(PushConfig {
            apns,
            fcm,
            timeout: Duration::from_millis(env_parse("PUSH_TIMEOUT_MS", 5000)?),
            concurrency: env_parse("PUSH_CONCURRENCY", 64)?,
            live_batch: env_parse("LIVE_PUSH_BATCH", 500)?,
        })
    }

    /// The providers: APNs for iOS, FCM for Android, `log` for a platform whose provider
    /// is off.
    pub fn router(&self) -> anyhow::Result<Router> {
        let client = http2_client(self.timeout)?;
        let log: Arc<dyn Provider> = Arc::new(LogProvider);
        let ios: Arc<dyn Provider> = match &self.apns {
            Some(c) => Arc::new(apns::Apns::new(c.clone(), client.clone(), self.timeout)?),
            None => log.clone(),
        };
        let android: Arc<dyn Provider> = match &self.fcm {
            Some(c) => Arc::new(fcm::Fcm::new(c.clone(), client, self.timeout)?),
            None => log,
        };
        match (&self.apns, &self.fcm) {
            (None, None) => tracing::warn!(
                "no push provider configured (APNS_KEY_FILE, FCM_CREDENTIALS_FILE): log mode, \
                 every push is only logged and counts as delivered"
            ),
            (None, Some(_)) => {
                tracing::warn!("APNs off (APNS_KEY_FILE unset): iOS pushes are only logged")
            }
            (Some(_), None) => {
                tracing::warn!(
                    "FCM off (FCM_CREDENTIALS_FILE unset): Android pushes are only logged"
                )
            }
            (Some(_), Some(_)) => {}
        }
        Ok(Router { ios, android })
    }
}

/// One HTTP/2 client for both providers: APNs speaks nothing else, and one multiplexed
/// connection per provider carries every push. Prior knowledge works over TLS (ALPN `h2`)
/// and over the plaintext stand-ins.
fn http2_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(600))
        .http2_keep_alive_interval(Duration::from_secs(60))
        .build()?)
}

/// Starts the push consumers.
pub async fn start(
    backbone: &Backbone,
    config: &PushConfig,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let dispatcher = Arc::new(dispatch::Dispatcher {
        pool: backbone.pool.clone(),
        subjects: backbone.subjects.clone(),
        router: config.router()?,
        concurrency: config.concurrency.max(1),
        live_batch: config.live_batch.max(1),
    });
    let mut tasks = Vec::new();
    let mut calls = bus::consumer::ConsumerSpec::new(dispatch::CALL_CONSUMER, bus::Family::Call);
    calls.event_types = ["call.initiated", "call.cancelled", "call.missed"]
        .map(String::from)
        .to_vec();
    tasks.push(
        bus::consumer::spawn_consumer(
            backbone.js.clone(),
            backbone.subjects.clone(),
            calls,
            Arc::new(dispatch::CallPushes(dispatcher.clone())),
            backbone.shutdown.subscribe(),
        )
        .await?,
    );
    let mut sessions =
        bus::consumer::ConsumerSpec::new(dispatch::SESSION_CONSUMER, bus::Family::Session);
    sessions.event_types = ["session.live", "session.gift_sent"]
        .map(String::from)
        .to_vec();
    // Telling every follower of a big creator takes a while; a redelivery meanwhile would
    // only find the followers already claimed, but there is no point in it.
    sessions.ack_wait = Duration::from_secs(300);
    sessions.concurrency = 4;
    tasks.push(
        bus::consumer::spawn_consumer(
            backbone.js.clone(),
            backbone.subjects.clone(),
            sessions,
            Arc::new(dispatch::SessionPushes(dispatcher)),
            backbone.shutdown.subscribe(),
        )
        .await?,
    );
    Ok(tasks)
}
