//! Configuration every service shares, read once from the environment and validated at
//! start (a missing required variable is an error naming it).

use crate::client_ip::TrustedProxies;
use crate::server::{env_or, env_parse, env_required};

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// LiveKit: where its API is, what clients get as `wsUrl`, and the credentials.
#[derive(Debug, Clone)]
pub struct LiveKitConfig {
    pub url: String,
    pub ws_url: String,
    pub api_key: String,
    pub api_secret: Secret,
}

impl LiveKitConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let url = env_or("LIVEKIT_URL", "http://127.0.0.1:7880");
        let ws_url = std::env::var("LIVEKIT_WS_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| ws_url_of(&url));
        Ok(LiveKitConfig {
            url,
            ws_url,
            api_key: env_required("LIVEKIT_API_KEY")?,
            api_secret: Secret::new(env_required("LIVEKIT_API_SECRET")?),
        })
    }

    pub fn credentials(&self) -> livekit::Credentials {
        livekit::Credentials::new(self.api_key.clone(), self.api_secret.expose().to_owned())
    }
}

/// `http://host` → `ws://host`, `https://host` → `wss://host`.
pub fn ws_url_of(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    }
}

/// What every service reads.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub service: &'static str,
    pub http_port: u16,
    pub database_url: String,
    pub nats_url: String,
    /// Subject/stream namespace (tests); empty in production.
    pub nats_namespace: String,
    pub jwt_secret: Secret,
    pub trusted_proxies: TrustedProxies,
    pub max_body_bytes: usize,
    pub otlp_endpoint: Option<String>,
    pub db_pool_size: usize,
}

impl CommonConfig {
    pub fn from_env(service: &'static str, default_port: u16) -> anyhow::Result<Self> {
        Ok(CommonConfig {
            service,
            http_port: env_parse("HTTP_PORT", default_port)?,
            database_url: env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ipelya"),
            nats_url: env_or("NATS_URL", "nats://127.0.0.1:4222"),
            nats_namespace: env_or("NATS_NAMESPACE", ""),
            jwt_secret: Secret::new(env_required("AUTH_JWT_SECRET")?),
            trusted_proxies: TrustedProxies::parse(&env_or("TRUSTED_PROXIES", "loopback"))
                .map_err(anyhow::Error::msg)?,
            max_body_bytes: env_parse("MAX_BODY_BYTES", 64 * 1024)?,
            otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|v| !v.is_empty()),
            db_pool_size: env_parse("DB_POOL_SIZE", 16)?,
        })
    }

    /// A configuration for tests (port 0, given database and namespace).
    pub fn for_tests(
        service: &'static str,
        database_url: &str,
        nats_url: &str,
        namespace: &str,
        jwt_secret: &str,
    ) -> Self {
        CommonConfig {
            service,
            http_port: 0,
            database_url: database_url.to_owned(),
            nats_url: nats_url.to_owned(),
            nats_namespace: namespace.to_owned(),
            jwt_secret: Secret::new(jwt_secret),
            trusted_proxies: TrustedProxies::loopback(),
            max_body_bytes: 64 * 1024,
            otlp_endpoint: None,
            db_pool_size: 3,
        }
    }
}
