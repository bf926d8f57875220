//! moderation's HTTP API with an operator's bearer token, and what its failures mean for the
//! exit code.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// A failed command: the message for stderr and the exit code scripts branch on.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: Option<String>,
    pub status: Option<u16>,
    pub exit: u8,
}

/// The exit codes (README).
pub mod exit {
    pub const UNAUTHORISED: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const REFUSED: u8 = 5;
    pub const SERVICE: u8 = 6;
}

impl Failure {
    pub fn service(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: None,
            status: None,
            exit: exit::SERVICE,
        }
    }

    /// What an error answer of the API means: the envelope's message and code, and the exit
    /// code for its status.
    fn from_answer(status: u16, body: &Value) -> Self {
        let exit = match status {
            401 | 403 => exit::UNAUTHORISED,
            404 => exit::NOT_FOUND,
            400..=499 => exit::REFUSED,
            _ => exit::SERVICE,
        };
        let message = body["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| match status {
                401 => "not authorised: the token is missing, malformed or expired".to_owned(),
                403 => "forbidden: this account is not an operator".to_owned(),
                404 => "not found".to_owned(),
                _ => format!("the service answered HTTP {status}"),
            });
        Failure {
            message,
            code: body["errorCode"].as_str().map(str::to_owned),
            status: Some(status),
            exit,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        match (&self.code, self.status) {
            (Some(code), Some(status)) => write!(f, " [{code}, HTTP {status}]"),
            (None, Some(status)) => write!(f, " [HTTP {status}]"),
            _ => Ok(()),
        }
    }
}

/// The API at `base` as one operator.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<Self, Failure> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure {
                message: format!("--url must be an http(s) URL, not {base:?}"),
                code: None,
                status: None,
                exit: 2,
            });
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("ipelya-ops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::service(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            token: token.to_owned(),
        })
    }

    /// One request; the answer's JSON when it is a success envelope.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                e.to_string()
            };
            Failure::service(format!("{method} {url}: {why}"))
        })?;
        let status = res.status().as_u16();
        let text = res
            .text()
            .await
            .map_err(|e| Failure::service(format!("{method} {url}: reading the answer: {e}")))?;
        let json: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) if status >= 400 => Value::Null,
                Err(_) => {
                    return Err(Failure::service(format!(
                        "{method} {url}: the answer (HTTP {status}) is not JSON — is --url moderation's address?"
                    )));
                }
            }
        };
        if status >= 400 || json["success"] == Value::Bool(false) {
            return Err(Failure::from_answer(status, &json));
        }
        Ok(json)
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        self.send(reqwest::Method::POST, path, body).await
    }
}

/// A path segment (ids come from the command line).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
