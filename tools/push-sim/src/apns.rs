//! The APNs stand-in: `POST /3/device/<token>` over HTTP/2 with token-based auth, checked
//! as Apple checks it, answered with Apple's status codes and `reason`s.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::{self, PemKeyPair};
use crate::{Faults, Recorder, Running};

/// What a notifier needs to talk to the stand-in: the values of `APNS_KEY_ID`,
/// `APNS_TEAM_ID`, `APNS_TOPIC` and the content of `APNS_KEY_FILE`.
#[derive(Debug, Clone)]
pub struct ApnsCredentials {
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id; VoIP pushes go to `<topic>.voip`.
    pub topic: String,
    /// Test-generated key pair; `keys.private_pem` is the `.p8` file's content.
    pub keys: PemKeyPair,
}

impl ApnsCredentials {
    pub const DEFAULT_KEY_ID: &'static str = "SIMKEY0001";
    pub const DEFAULT_TEAM_ID: &'static str = "SIMTEAM001";
    pub const DEFAULT_TOPIC: &'static str = "app.ipelya.sim";

    /// Fresh credentials with the default identities.
    pub fn generate() -> anyhow::Result<Self> {
        Ok(ApnsCredentials {
            key_id: Self::DEFAULT_KEY_ID.into(),
            team_id: Self::DEFAULT_TEAM_ID.into(),
            topic: Self::DEFAULT_TOPIC.into(),
            keys: keys::generate_es256()?,
        })
    }
}

/// How the stand-in runs.
#[derive(Debug, Clone, Default)]
pub struct ApnsSimConfig {
    /// `None`: generated.
    pub credentials: Option<ApnsCredentials>,
}

/// One push APNs accepted.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApnsPush {
    pub token: String,
    pub topic: String,
    /// `apns-push-type`: `alert`, `background`, `voip`.
    pub push_type: String,
    pub priority: u8,
    pub expiration: Option<i64>,
    pub collapse_id: Option<String>,
    pub apns_id: String,
    pub payload: serde_json::Value,
}

/// A request APNs refused, with its status and `reason`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApnsRejection {
    pub token: String,
    pub status: u16,
    pub reason: String,
}

struct SimState {
    credentials: ApnsCredentials,
    decoding_key: DecodingKey,
    faults: Arc<Faults>,
    received: Recorder<ApnsPush>,
    rejected: Recorder<ApnsRejection>,
}

/// A running APNs stand-in.
pub struct ApnsSim {
    url: String,
    state: Arc<SimState>,
    faults: Arc<Faults>,
    running: Running,
}

impl ApnsSim {
    /// Serves on `listener` (bind `127.0.0.1:0` in tests).
    pub async fn start(config: ApnsSimConfig, listener: TcpListener) -> anyhow::Result<Self> {
        crate::install_jwt_provider();
        let credentials = match config.credentials {
            Some(c) => c,
            None => ApnsCredentials::generate()?,
        };
        let decoding_key = DecodingKey::from_ec_pem(credentials.keys.public_pem.as_bytes())?;
        let faults = Arc::new(Faults::default());
        let state = Arc::new(SimState {
            credentials,
            decoding_key,
            faults: faults.clone(),
            received: Recorder::new(),
            rejected: Recorder::new(),
        });
        let url = crate::base_url(&listener)?;
        let data = web::Data::from(state.clone());
        let running = crate::serve(listener, faults.clone(), move |cfg| {
            cfg.app_data(data.clone())
                .route("/3/device/{token}", web::post().to(push))
                .route("/sim/received", web::get().to(received))
                .route("/sim/received", web::delete().to(clear_received))
                .default_service(web::to(bad_path));
        })?;
        Ok(ApnsSim {
            url,
            state,
            faults,
            running,
        })
    }

    /// `APNS_URL` for the notifier (`http://127.0.0.1:<port>`, HTTP/2 prior knowledge).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn credentials(&self) -> &ApnsCredentials {
        &self.state.credentials
    }

    /// Every accepted push, in arrival order.
    pub fn received(&self) -> Vec<ApnsPush> {
        self.state.received.all()
    }

    /// The accepted pushes to one device token.
    pub fn received_for(&self, token: &str) -> Vec<ApnsPush> {
        self.received()
            .into_iter()
            .filter(|p| p.token == token)
            .collect()
    }

    /// Every refused request (bad header, bad token, injected fault ...).
    pub fn rejected(&self) -> Vec<ApnsRejection> {
        self.state.rejected.all()
    }

    pub fn clear_received(&self) {
        self.state.received.clear();
        self.state.rejected.clear();
    }

    /// Fault injection: unregistered tokens, failures, delay.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

#[derive(Debug, Deserialize)]
struct ProviderClaims {
    iss: String,
    iat: i64,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn refuse(state: &SimState, token: &str, status: StatusCode, reason: &str) -> HttpResponse {
    state.rejected.push(ApnsRejection {
        token: token.to_owned(),
        status: status.as_u16(),
        reason: reason.to_owned(),
    });
    let mut body = serde_json::json!({ "reason": reason });
    if status == StatusCode::GONE {
        body["timestamp"] = serde_json::json!(now_secs() * 1000);
    }
    HttpResponse::build(status).json(body)
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Checks the provider token as APNs does: ES256, `kid` of a known key, `iss` = the team,
/// `iat` not older than an hour (and not in the future).
fn check_provider_token(state: &SimState, req: &HttpRequest) -> Result<(), &'static str> {
    let Some(auth) = header(req, "authorization") else {
        return Err("MissingProviderToken");
    };
    let Some(jwt) = auth
        .strip_prefix("bearer ")
        .or_else(|| auth.strip_prefix("Bearer "))
    else {
        return Err("MissingProviderToken");
    };
    let head = jsonwebtoken::decode_header(jwt).map_err(|_| "InvalidProviderToken")?;
    if head.alg != Algorithm::ES256 || head.kid.as_deref() != Some(&state.credentials.key_id) {
        return Err("InvalidProviderToken");
    }
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let data = jsonwebtoken::decode::<ProviderClaims>(jwt, &state.decoding_key, &validation)
        .map_err(|_| "InvalidProviderToken")?;
    if data.claims.iss != state.credentials.team_id {
        return Err("InvalidProviderToken");
    }
    let age = now_secs() - data.claims.iat;
    if age > 3600 {
        return Err("ExpiredProviderToken");
    }
    if age < -60 {
        return Err("InvalidProviderToken");
    }
    Ok(())
}

fn is_device_token(token: &str) -> bool {
    // APNs device tokens are hex (64 digits today; Apple says not to rely on the length).
    token.len() >= 64
        && token.len() <= 200
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn push(
    state: web::Data<SimState>,
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let token = token.into_inner();
    if let Some(refused) = crate::http2_refusal(&req) {
        return refused;
    }
    state.faults.wait().await;
    if let Err(reason) = check_provider_token(&state, &req) {
        return refuse(&state, &token, StatusCode::FORBIDDEN, reason);
    }
    let Some(topic) = header(&req, "apns-topic").map(str::to_owned) else {
        return refuse(&state, &token, StatusCode::BAD_REQUEST, "MissingTopic");
    };
    let push_type = header(&req, "apns-push-type").unwrap_or("").to_owned();
    let bundle = &state.credentials.topic;
    let voip_topic = format!("{bundle}.voip");
    let topic_ok = match push_type.as_str() {
        "voip" => topic == voip_topic,
        "alert" | "background" => topic == *bundle,
        _ => return refuse(&state, &token, StatusCode::BAD_REQUEST, "InvalidPushType"),
    };
    if !topic_ok {
        let reason = if topic == *bundle || topic == voip_topic {
            "TopicDisallowed"
        } else {
            "BadTopic"
        };
        return refuse(&state, &token, StatusCode::BAD_REQUEST, reason);
    }
    let priority: u8 = match header(&req, "apns-priority") {
        None => 10,
        Some(p) => match p.parse() {
            Ok(p @ (1 | 5 | 10)) => p,
            _ => return refuse(&state, &token, StatusCode::BAD_REQUEST, "BadPriority"),
        },
    };
    // Apple: background pushes must be sent with priority 5.
    if push_type == "background" && priority == 10 {
        return refuse(&state, &token, StatusCode::BAD_REQUEST, "BadPriority");
    }
    let expiration = match header(&req, "apns-expiration") {
        None => None,
        Some(e) => match e.parse::<i64>() {
            Ok(e) if e >= 0 => Some(e),
            _ => return refuse(&state, &token, StatusCode::BAD_REQUEST, "BadExpirationDate"),
        },
    };
    let collapse_id = header(&req, "apns-collapse-id").map(str::to_owned);
    if collapse_id.as_ref().is_some_and(|c| c.len() > 64) {
        return refuse(&state, &token, StatusCode::BAD_REQUEST, "BadCollapseId");
    }
    if !is_device_token(&token) {
        return refuse(&state, &token, StatusCode::BAD_REQUEST, "BadDeviceToken");
    }
    let limit = if push_type == "voip" { 5120 } else { 4096 };
    if body.len() > limit {
        return refuse(
            &state,
            &token,
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
        );
    }
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => return refuse(&state, &token, StatusCode::BAD_REQUEST, "PayloadEmpty"),
    };
    // A VoIP payload is the app's own JSON; every other push needs its `aps` dictionary, and
    // a background push `content-available: 1`.
    if push_type != "voip" {
        let Some(aps) = payload.get("aps").and_then(|a| a.as_object()) else {
            return refuse(&state, &token, StatusCode::BAD_REQUEST, "PayloadEmpty");
        };
        if push_type == "background" && aps.get("content-available") != Some(&1.into()) {
            return refuse(&state, &token, StatusCode::BAD_REQUEST, "PayloadEmpty");
        }
        if push_type == "alert" && !aps.contains_key("alert") {
            return refuse(&state, &token, StatusCode::BAD_REQUEST, "PayloadEmpty");
        }
    }
    if let Some(status) = state.faults.take_failure() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = if status == StatusCode::SERVICE_UNAVAILABLE {
            "ServiceUnavailable"
        } else {
            "InternalServerError"
        };
        return refuse(&state, &token, status, reason);
    }
    if state.faults.is_unregistered(&token) {
        return refuse(&state, &token, StatusCode::GONE, "Unregistered");
    }
    let apns_id = header(&req, "apns-id")
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string().to_uppercase());
    state.received.push(ApnsPush {
        token,
        topic,
        push_type,
        priority,
        expiration,
        collapse_id,
        apns_id: apns_id.clone(),
        payload,
    });
    HttpResponse::Ok()
        .insert_header(("apns-id", apns_id))
        .finish()
}

async fn received(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.received.all())
}

async fn clear_received(state: web::Data<SimState>) -> HttpResponse {
    state.received.clear();
    state.rejected.clear();
    HttpResponse::Ok().json(serde_json::json!({"ok": true}))
}

async fn bad_path() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({"reason": "BadPath"}))
}
