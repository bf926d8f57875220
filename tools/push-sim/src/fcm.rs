//! The FCM stand-in: Google's OAuth token endpoint (JWT-bearer grant) and the FCM HTTP v1
//! `messages:send`, over HTTP/2, checked and answered as Google does.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::keys::{self, PemKeyPair};
use crate::{Faults, Recorder, Running};

/// The scope an FCM sender asks for.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const CLOUD_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A test service account: what `FCM_PROJECT_ID` and the file of `FCM_CREDENTIALS_FILE` hold.
#[derive(Debug, Clone)]
pub struct FcmCredentials {
    pub project_id: String,
    pub client_email: String,
    pub private_key_id: String,
    /// The stand-in's token endpoint (`<url>/token`).
    pub token_uri: String,
    /// Test-generated RSA key pair.
    pub keys: PemKeyPair,
}

impl FcmCredentials {
    pub const DEFAULT_PROJECT: &'static str = "ipelya-sim";

    /// The service-account JSON, in Google's format (`type`, `project_id`, `private_key_id`,
    /// `private_key`, `client_email`, `token_uri`, ...).
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.keys.private_pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000000",
            "auth_uri": format!("{}/auth", self.token_uri.trim_end_matches("/token")),
            "token_uri": self.token_uri,
        })
        .to_string()
    }
}

/// How the stand-in runs.
#[derive(Debug, Clone, Default)]
pub struct FcmSimConfig {
    /// Defaults to [`FcmCredentials::DEFAULT_PROJECT`].
    pub project_id: Option<String>,
    /// A key of its own instead of the machine's shared test key (slow in debug builds).
    pub fresh_key: bool,
}

/// One message FCM accepted.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FcmPush {
    pub token: String,
    /// The whole `message` object.
    pub message: Value,
    /// No `notification` anywhere: the app's code handles it.
    pub data_only: bool,
    /// `android.priority`, lower-cased (`high`, `normal`), when given.
    pub android_priority: Option<String>,
    /// `android.ttl` (`"30s"`), when given.
    pub ttl: Option<String>,
    pub data: HashMap<String, String>,
}

/// A request FCM refused.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FcmRejection {
    pub token: String,
    pub status: u16,
    pub error_code: String,
    pub message: String,
}

struct SimState {
    credentials: FcmCredentials,
    decoding_key: DecodingKey,
    /// Access tokens issued, with their expiry (unix seconds).
    issued: Mutex<HashMap<String, i64>>,
    faults: Arc<Faults>,
    received: Recorder<FcmPush>,
    rejected: Recorder<FcmRejection>,
}

/// A running FCM stand-in.
pub struct FcmSim {
    url: String,
    state: Arc<SimState>,
    faults: Arc<Faults>,
    running: Running,
}

impl FcmSim {
    /// Serves on `listener`; the service account's `token_uri` points at it.
    pub async fn start(config: FcmSimConfig, listener: TcpListener) -> anyhow::Result<Self> {
        crate::install_jwt_provider();
        let url = crate::base_url(&listener)?;
        let project_id = config
            .project_id
            .unwrap_or_else(|| FcmCredentials::DEFAULT_PROJECT.to_owned());
        let credentials = FcmCredentials {
            client_email: format!("push-sim@{project_id}.iam.gserviceaccount.test"),
            project_id,
            private_key_id: uuid::Uuid::new_v4().simple().to_string(),
            token_uri: format!("{url}/token"),
            keys: if config.fresh_key {
                tokio::task::spawn_blocking(keys::generate_rs256).await??
            } else {
                tokio::task::spawn_blocking(keys::shared_test_rs256).await??
            },
        };
        let decoding_key = DecodingKey::from_rsa_pem(credentials.keys.public_pem.as_bytes())?;
        let faults = Arc::new(Faults::default());
        let state = Arc::new(SimState {
            credentials,
            decoding_key,
            issued: Mutex::new(HashMap::new()),
            faults: faults.clone(),
            received: Recorder::new(),
            rejected: Recorder::new(),
        });
        let data = web::Data::from(state.clone());
        let running = crate::serve(listener, faults.clone(), move |cfg| {
            cfg.app_data(data.clone())
                .route("/token", web::post().to(token))
                .route("/v1/projects/{project}/messages:send", web::post().to(send))
                .route("/sim/received", web::get().to(received))
                .route("/sim/received", web::delete().to(clear_received))
                .default_service(web::to(not_found));
        })?;
        Ok(FcmSim {
            url,
            state,
            faults,
            running,
        })
    }

    /// `FCM_URL` for the notifier.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn credentials(&self) -> &FcmCredentials {
        &self.state.credentials
    }

    /// How many access tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.issued.lock().unwrap().len()
    }

    pub fn received(&self) -> Vec<FcmPush> {
        self.state.received.all()
    }

    pub fn received_for(&self, token: &str) -> Vec<FcmPush> {
        self.received()
            .into_iter()
            .filter(|p| p.token == token)
            .collect()
    }

    pub fn rejected(&self) -> Vec<FcmRejection> {
        self.state.rejected.all()
    }

    pub fn clear_received(&self) {
        self.state.received.clear();
        self.state.rejected.clear();
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    assertion: String,
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    // `iss` and `aud` are checked by the validation itself.
    scope: String,
    iat: i64,
    exp: i64,
}

fn oauth_error(description: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({
        "error": "invalid_grant",
        "error_description": description,
    }))
}

/// Google's token endpoint for service accounts (RFC 7523 JWT-bearer grant).
async fn token(state: web::Data<SimState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Some(refused) = crate::http2_refusal(&req) {
        return refused;
    }
    let Ok(form) = serde_urlencoded_form(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request"}));
    };
    if form.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return HttpResponse::BadRequest().json(json!({"error": "unsupported_grant_type"}));
    }
    let creds = &state.credentials;
    let head = match jsonwebtoken::decode_header(&form.assertion) {
        Ok(h) => h,
        Err(_) => return oauth_error("Invalid JWT"),
    };
    if head.alg != Algorithm::RS256 || head.kid.as_deref() != Some(&creds.private_key_id) {
        return oauth_error("Invalid JWT Signature.");
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&creds.token_uri]);
    validation.set_issuer(&[&creds.client_email]);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(
        &form.assertion,
        &state.decoding_key,
        &validation,
    ) {
        Ok(d) => d.claims,
        Err(e) => return oauth_error(&format!("Invalid JWT: {e}")),
    };
    if claims.exp - claims.iat > 3600 || claims.iat > now_secs() + 60 {
        return oauth_error("Invalid JWT: Token must be a short-lived token (60 minutes)");
    }
    if !claims
        .scope
        .split(' ')
        .any(|s| s == FCM_SCOPE || s == CLOUD_SCOPE)
    {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_scope"}));
    }
    let access = format!("sim.{}", uuid::Uuid::new_v4().simple());
    state
        .issued
        .lock()
        .unwrap()
        .insert(access.clone(), now_secs() + 3600);
    HttpResponse::Ok().json(json!({
        "access_token": access,
        "expires_in": 3599,
        "token_type": "Bearer",
    }))
}

fn serde_urlencoded_form(body: &[u8]) -> Result<TokenForm, ()> {
    let pairs: HashMap<String, String> = web::Query::<HashMap<String, String>>::from_query(
        std::str::from_utf8(body).map_err(|_| ())?,
    )
    .map_err(|_| ())?
    .into_inner();
    Ok(TokenForm {
        grant_type: pairs.get("grant_type").cloned().ok_or(())?,
        assertion: pairs.get("assertion").cloned().ok_or(())?,
    })
}

fn refuse(
    state: &SimState,
    token: &str,
    status: StatusCode,
    error_code: &str,
    message: &str,
) -> HttpResponse {
    state.rejected.push(FcmRejection {
        token: token.to_owned(),
        status: status.as_u16(),
        error_code: error_code.to_owned(),
        message: message.to_owned(),
    });
    let grpc_status = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    HttpResponse::build(status).json(json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "status": grpc_status,
            "details": [{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": error_code,
            }],
        }
    }))
}

const MESSAGE_FIELDS: &[&str] = &[
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "token",
    "topic",
    "condition",
];

fn string_map(v: &Value) -> Option<HashMap<String, String>> {
    v.as_object()?
        .iter()
        .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect()
}

fn is_duration(s: &str) -> bool {
    let Some(num) = s.strip_suffix('s') else {
        return false;
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 9
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn is_registration_token(t: &str) -> bool {
    t.len() >= 20
        && t.len() <= 4096
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'-')
}

/// What is wrong with a `message`, as FCM's `INVALID_ARGUMENT` message would say.
fn check_message(message: &Value) -> Result<FcmPush, String> {
    let Some(obj) = message.as_object() else {
        return Err("message must be an object".into());
    };
    if let Some(unknown) = obj.keys().find(|k| !MESSAGE_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\" at 'message'"
        ));
    }
    let targets = ["token", "topic", "condition"]
        .iter()
        .filter(|k| obj.contains_key(**k))
        .count();
    if targets != 1 {
        return Err("exactly one of token, topic or condition is required".into());
    }
    let token = obj
        .get("token")
        .and_then(Value::as_str)
        .ok_or("this stand-in only sends to tokens")?
        .to_owned();
    let data = match obj.get("data") {
        None => HashMap::new(),
        Some(d) => string_map(d).ok_or("message.data values must be strings")?,
    };
    if let Some(n) = obj.get("notification")
        && string_map(n).is_none()
    {
        return Err("message.notification must be an object of strings".into());
    }
    let mut android_priority = None;
    let mut ttl = None;
    let mut android_notification = false;
    if let Some(android) = obj.get("android") {
        let a = android
            .as_object()
            .ok_or("message.android must be an object")?;
        if let Some(p) = a.get("priority") {
            let p = p
                .as_str()
                .map(str::to_ascii_lowercase)
                .filter(|p| p == "high" || p == "normal")
                .ok_or("message.android.priority must be NORMAL or HIGH")?;
            android_priority = Some(p);
        }
        if let Some(t) = a.get("ttl") {
            let t = t
                .as_str()
                .filter(|t| is_duration(t))
                .ok_or("message.android.ttl must be a duration such as \"30s\"")?;
            ttl = Some(t.to_owned());
        }
        if let Some(d) = a.get("data")
            && string_map(d).is_none()
        {
            return Err("message.android.data values must be strings".into());
        }
        android_notification = a.contains_key("notification");
    }
    let data_only = !obj.contains_key("notification") && !android_notification;
    // Stricter than Google on purpose: an incoming call that is not a high-priority data
    // message is delayed by Doze or shown by the system instead of ringing — our bug.
    if data.get("type").map(String::as_str) == Some("incoming_call")
        && (!data_only || android_priority.as_deref() != Some("high"))
    {
        return Err("incoming calls must be data-only messages with android.priority HIGH".into());
    }
    Ok(FcmPush {
        token,
        message: message.clone(),
        data_only,
        android_priority,
        ttl,
        data,
    })
}

async fn send(
    state: web::Data<SimState>,
    req: HttpRequest,
    project: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refused) = crate::http2_refusal(&req) {
        return refused;
    }
    state.faults.wait().await;
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let authorized = bearer.is_some_and(|b| {
        state
            .issued
            .lock()
            .unwrap()
            .get(b)
            .is_some_and(|exp| *exp > now_secs())
    });
    if !authorized {
        return refuse(
            &state,
            "",
            StatusCode::UNAUTHORIZED,
            "THIRD_PARTY_AUTH_ERROR",
            "Request had invalid authentication credentials.",
        );
    }
    if project.as_str() != state.credentials.project_id {
        return refuse(
            &state,
            "",
            StatusCode::FORBIDDEN,
            "SENDER_ID_MISMATCH",
            "Permission denied on the project.",
        );
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("Invalid JSON payload received. {e}");
            return refuse(
                &state,
                "",
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &msg,
            );
        }
    };
    let top_ok = parsed
        .as_object()
        .is_some_and(|o| o.keys().all(|k| k == "message" || k == "validate_only"));
    let Some(message) = parsed.get("message").filter(|_| top_ok) else {
        return refuse(
            &state,
            "",
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received: expected {\"message\": {...}}",
        );
    };
    let push = match check_message(message) {
        Ok(p) => p,
        Err(msg) => {
            let token = message.get("token").and_then(Value::as_str).unwrap_or("");
            return refuse(
                &state,
                token,
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &msg,
            );
        }
    };
    if !is_registration_token(&push.token) {
        return refuse(
            &state,
            &push.token,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
        );
    }
    if let Some(status) = state.faults.take_failure() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = if status == StatusCode::SERVICE_UNAVAILABLE {
            "UNAVAILABLE"
        } else {
            "INTERNAL"
        };
        return refuse(
            &state,
            &push.token,
            status,
            code,
            "Internal error encountered.",
        );
    }
    if state.faults.is_unregistered(&push.token) {
        return refuse(
            &state,
            &push.token,
            StatusCode::NOT_FOUND,
            "UNREGISTERED",
            "Requested entity was not found.",
        );
    }
    let name = format!(
        "projects/{}/messages/{}",
        state.credentials.project_id,
        uuid::Uuid::new_v4().simple()
    );
    state.received.push(push);
    HttpResponse::Ok().json(json!({ "name": name }))
}

async fn received(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.received.all())
}

async fn clear_received(state: web::Data<SimState>) -> HttpResponse {
    state.received.clear();
    state.rejected.clear();
    HttpResponse::Ok().json(json!({"ok": true}))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": {"code": 404, "status": "NOT_FOUND"}}))
}
