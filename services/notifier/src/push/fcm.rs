//! Firebase Cloud Messaging, HTTP v1 API, with a service account's OAuth token.
//!
//! Why not `gcp_auth` for the token: the tests' token endpoint (the service account's
//! `token_uri`) is a plaintext HTTP/2 stand-in, and whether gcp_auth 0.12's own HTTP client
//! reaches one was not verified here (the crate is not in this machine's registry cache). The
//! exchange is RFC 7523 in a dozen lines — an RS256 assertion signed with the service
//! account's key, POSTed to its `token_uri` through the same reqwest client and timeout as
//! the pushes, the access token cached until shortly before it expires — so it is done here.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::FcmConfig;
use super::provider::{Outcome, Provider, Push, PushKind, bounded, describe, request_failed};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Renew the access token this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

pub struct Fcm {
    config: FcmConfig,
    key: EncodingKey,
    client: reqwest::Client,
    timeout: Duration,
    access: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl Fcm {
    /// Fails at start-up on a service account whose key is not an RSA PEM.
    pub fn new(
        config: FcmConfig,
        client: reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let key = EncodingKey::from_rsa_pem(config.service_account.private_key.expose().as_bytes())
            .map_err(|e| {
                anyhow::anyhow!("FCM_CREDENTIALS_FILE: private_key is not an RSA key: {e}")
            })?;
        Ok(Fcm {
            config,
            key,
            client,
            timeout,
            access: tokio::sync::Mutex::new(None),
        })
    }

    /// The OAuth access token, fetched (one request at a time) when absent or about to expire.
    async fn access_token(&self) -> Result<String, String> {
        let mut cached = self.access.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && Instant::now() + RENEW_BEFORE < *expires
        {
            return Ok(token.clone());
        }
        let sa = &self.config.service_account;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(sa.private_key_id.clone());
        let assertion = jsonwebtoken::encode(
            &header,
            &json!({
                "iss": sa.client_email,
                "scope": SCOPE,
                "aud": sa.token_uri,
                "iat": now,
                "exp": now + 3600,
            }),
            &self.key,
        )
        .map_err(|e| format!("fcm assertion: {e}"))?;
        // The JWT is URL-safe base64 and dots: only the grant type needs escaping.
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let res = self
            .client
            .post(&sa.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| describe("fcm token", &e))?;
        let status = res.status().as_u16();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        let Some(token) = answer.get("access_token").and_then(Value::as_str) else {
            let why = answer.get("error").and_then(Value::as_str).unwrap_or("");
            return Err(format!("fcm token endpoint answered {status} {why}")
                .trim_end()
                .to_owned());
        };
        let expires_in = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(3600);
        *cached = Some((
            token.to_owned(),
            Instant::now() + Duration::from_secs(expires_in),
        ));
        Ok(token.to_owned())
    }

    async fn forget_token(&self) {
        *self.access.lock().await = None;
    }

    async fn send_now(&self, push: &Push) -> Outcome {
        let access = match self.access_token().await {
            Ok(t) => t,
            Err(error) => {
                return Outcome::Failed {
                    http_status: None,
                    error,
                };
            }
        };
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.config.url.trim_end_matches('/'),
            self.config.project_id
        );
        let res = match self
            .client
            .post(url)
            .bearer_auth(access)
            .json(&message(push))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return request_failed("fcm", &e),
        };
        let status = res.status().as_u16();
        if status == 200 {
            return Outcome::Delivered {
                http_status: Some(status),
            };
        }
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        let err = &answer["error"];
        let message = err["message"].as_str().unwrap_or("");
        let code = err["details"]
            .as_array()
            .and_then(|d| d.iter().find_map(|d| d["errorCode"].as_str()))
            .or_else(|| err["status"].as_str())
            .unwrap_or("")
            .to_owned();
        let dead_token = (status == 404 && code == "UNREGISTERED")
            || (status == 400 && message.contains("registration token"));
        if dead_token {
            return Outcome::Unregistered {
                http_status: Some(status),
                reason: code,
            };
        }
        if status == 401 {
            self.forget_token().await;
        }
        Outcome::Failed {
            http_status: Some(status),
            error: format!("fcm {status} {code}").trim_end().to_owned(),
        }
    }
}

/// The v1 message. A ring (and any `Data` push) is data-only: the app's code runs (and
/// shows its own call screen) instead of the system drawing a notification.
fn message(push: &Push) -> Value {
    let data: BTreeMap<&str, &str> = push
        .data
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut android = json!({
        "priority": if push.high_priority { "high" } else { "normal" },
    });
    if let Some(ttl) = push.ttl {
        android["ttl"] = json!(format!("{}s", ttl.as_secs()));
    }
    if let Some(c) = &push.collapse_id {
        android["collapse_key"] = json!(c);
    }
    let mut message = json!({
        "token": push.token,
        "data": data,
        "android": android,
    });
    if push.kind == PushKind::Alert
        && let Some(n) = &push.notification
    {
        message["notification"] = json!({ "title": n.title, "body": n.body });
    }
    json!({ "message": message })
}

impl Provider for Fcm {
    fn name(&self) -> &'static str {
        "fcm"
    }
    fn send<'a>(&'a self, push: &'a Push) -> BoxFuture<'a, Outcome> {
        Box::pin(bounded(self.timeout, self.send_now(push)))
    }
}
