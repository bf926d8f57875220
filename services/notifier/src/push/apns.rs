//! Apple Push Notification service over HTTP/2 with token-based auth.
//!
//! Why not the `a2` crate (0.10, `ring` feature): its `ClientConfig` takes an `Endpoint`
//! that is only `Production` or `Sandbox` (Apple's two hosts, always over TLS), so it cannot
//! be pointed at `APNS_URL` — the HTTP/2 stand-in in tests, a relay in some deployments —
//! and its request timeout is in whole seconds. The protocol is small: one POST per push
//! with a few headers and an ES256 JWT, done here with reqwest (HTTP/2) and jsonwebtoken
//! under our own timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::ApnsConfig;
use super::provider::{Outcome, Provider, Push, PushKind, bounded, request_failed};

/// Apple refuses tokens older than an hour and throttles ones renewed more often than every
/// 20 minutes: renew in between.
const JWT_MAX_AGE: Duration = Duration::from_secs(50 * 60);

pub struct Apns {
    config: ApnsConfig,
    key: EncodingKey,
    client: reqwest::Client,
    timeout: Duration,
    jwt: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    /// Fails at start-up on a key that is not a PKCS#8 P-256 PEM.
    pub fn new(
        config: ApnsConfig,
        client: reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let key = EncodingKey::from_ec_pem(config.key_pem.expose().as_bytes())
            .map_err(|e| anyhow::anyhow!("APNS_KEY_FILE is not a PKCS#8 EC (P-256) key: {e}"))?;
        let apns = Apns {
            config,
            key,
            client,
            timeout,
            jwt: Mutex::new(None),
        };
        apns.provider_token()?;
        Ok(apns)
    }

    /// The provider token (ES256 JWT: `kid` = key id, `iss` = team id, `iat`), cached.
    fn provider_token(&self) -> anyhow::Result<String> {
        let mut cached = self.jwt.lock().expect("jwt lock");
        if let Some((jwt, at)) = cached.as_ref()
            && at.elapsed() < JWT_MAX_AGE
        {
            return Ok(jwt.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.config.key_id.clone());
        let iat = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let jwt = jsonwebtoken::encode(
            &header,
            &json!({ "iss": self.config.team_id, "iat": iat }),
            &self.key,
        )?;
        *cached = Some((jwt.clone(), Instant::now()));
        Ok(jwt)
    }

    fn forget_token(&self) {
        *self.jwt.lock().expect("jwt lock") = None;
    }

    async fn send_now(&self, push: &Push) -> Outcome {
        let jwt = match self.provider_token() {
            Ok(j) => j,
            Err(e) => {
                return Outcome::Failed {
                    http_status: None,
                    error: format!("apns provider token: {e}"),
                };
            }
        };
        let (push_type, topic, priority) = match push.kind {
            PushKind::Voip => ("voip", format!("{}.voip", self.config.topic), "10"),
            PushKind::Alert => ("alert", self.config.topic.clone(), "10"),
            // Apple requires priority 5 for background pushes.
            PushKind::Data => ("background", self.config.topic.clone(), "5"),
        };
        let url = format!(
            "{}/3/device/{}",
            self.config.url.trim_end_matches('/'),
            push.token
        );
        let mut req = self
            .client
            .post(url)
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", topic)
            .header("apns-push-type", push_type)
            .header("apns-priority", priority)
            .json(&payload(push));
        if let Some(ttl) = push.ttl {
            // 0 = deliver now or never (a ring); else an absolute unix time.
            let exp = if ttl.is_zero() {
                0
            } else {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| (d + ttl).as_secs())
                    .unwrap_or(0)
            };
            req = req.header("apns-expiration", exp.to_string());
        }
        if let Some(c) = &push.collapse_id {
            req = req.header("apns-collapse-id", c.as_str());
        }
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) => return request_failed("apns", &e),
        };
        let status = res.status().as_u16();
        if status == 200 {
            return Outcome::Delivered {
                http_status: Some(status),
            };
        }
        let reason = res
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        match (status, reason.as_str()) {
            (410, _) | (400, "BadDeviceToken") => Outcome::Unregistered {
                http_status: Some(status),
                reason: if reason.is_empty() {
                    "Unregistered".into()
                } else {
                    reason
                },
            },
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                self.forget_token();
                Outcome::Failed {
                    http_status: Some(status),
                    error: format!("apns {status} {reason}"),
                }
            }
            _ => Outcome::Failed {
                http_status: Some(status),
                error: format!("apns {status} {reason}").trim_end().to_owned(),
            },
        }
    }
}

/// The JSON body: a VoIP push carries the app's own dictionary (PushKit hands it to the
/// app, which reports the call to CallKit); others carry `aps` plus the app's keys.
fn payload(push: &Push) -> Value {
    let mut body: Map<String, Value> = push
        .data
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    match push.kind {
        PushKind::Voip => {}
        PushKind::Alert => {
            let n = push
                .notification
                .clone()
                .unwrap_or_else(|| super::provider::Notification {
                    title: String::new(),
                    body: String::new(),
                });
            body.insert(
                "aps".into(),
                json!({ "alert": { "title": n.title, "body": n.body }, "sound": "default" }),
            );
        }
        PushKind::Data => {
            body.insert("aps".into(), json!({ "content-available": 1 }));
        }
    }
    Value::Object(body)
}

impl Provider for Apns {
    fn name(&self) -> &'static str {
        "apns"
    }
    fn send<'a>(&'a self, push: &'a Push) -> BoxFuture<'a, Outcome> {
        Box::pin(bounded(self.timeout, self.send_now(push)))
    }
}
