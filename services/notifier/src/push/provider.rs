//! What a push is, what a provider answers, and the `log` provider. APNs and FCM sit behind
//! the same small trait so a unit test (or the `log` mode) can stand in for them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

/// A device's platform (`push_devices.platform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Ios,
    Android,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ios" => Some(Platform::Ios),
            "android" => Some(Platform::Android),
            _ => None,
        }
    }
}

/// A token's kind (`push_devices.kind`): iOS apps register a PushKit (`voip`) token for
/// calls and a standard one for everything else; Android has only standard tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Voip,
    Standard,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Voip => "voip",
            DeviceKind::Standard => "standard",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "voip" => Some(DeviceKind::Voip),
            "standard" => Some(DeviceKind::Standard),
            _ => None,
        }
    }
}

/// The kind of a push as the providers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    /// PushKit VoIP push (iOS `voip` tokens, incoming rings only).
    Voip,
    /// A visible notification.
    Alert,
    /// A silent push for the app's code: APNs `background`, FCM data-only message.
    Data,
}

impl PushKind {
    /// `push_deliveries.push_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Voip => "voip",
            PushKind::Alert => "alert",
            PushKind::Data => "data",
        }
    }
}

/// A visible notification's text.
#[derive(Debug, Clone)]
pub struct Notification {
    pub title: String,
    pub body: String,
}

/// One push to one device token.
#[derive(Debug, Clone)]
pub struct Push {
    pub token: String,
    pub kind: PushKind,
    /// Required for `Alert`.
    pub notification: Option<Notification>,
    /// The app's payload (`type`, `callId`, ...): strings, as FCM requires.
    pub data: BTreeMap<String, String>,
    /// Deliver now even on a sleeping device (FCM `HIGH`, APNs priority 10).
    pub high_priority: bool,
    /// How long the provider may hold the push for an offline device: zero for a ring
    /// (a late ring is worse than none).
    pub ttl: Option<Duration>,
    /// Replaces an earlier push with the same id on the device.
    pub collapse_id: Option<String>,
}

/// What a provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        http_status: Option<u16>,
    },
    /// The token is dead (app uninstalled, token rotated, not a token): delete it.
    Unregistered {
        http_status: Option<u16>,
        reason: String,
    },
    Failed {
        http_status: Option<u16>,
        error: String,
    },
}

impl Outcome {
    /// `push_deliveries.status`, also the `outcome` label of `push_attempts_total`.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Unregistered { .. } => "unregistered",
            Outcome::Failed { .. } => "failed",
        }
    }
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { http_status }
            | Outcome::Unregistered { http_status, .. }
            | Outcome::Failed { http_status, .. } => *http_status,
        }
    }
    pub fn error(&self) -> Option<String> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::Unregistered { reason, .. } => Some(reason.clone()),
            Outcome::Failed { error, .. } => Some(error.clone()),
        }
    }
}

/// A push provider.
pub trait Provider: Send + Sync + 'static {
    /// `apns` | `fcm` | `log` (`push_deliveries.provider`).
    fn name(&self) -> &'static str;
    /// Sends one push. Never longer than the provider's configured timeout.
    fn send<'a>(&'a self, push: &'a Push) -> BoxFuture<'a, Outcome>;
}

/// `log` mode: no provider configured for the platform. The push is only logged and counts
/// as delivered, so local runs and tests without provider credentials still ring.
pub struct LogProvider;

impl Provider for LogProvider {
    fn name(&self) -> &'static str {
        "log"
    }
    fn send<'a>(&'a self, push: &'a Push) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            tracing::info!(
                push.kind = push.kind.as_str(),
                push.r#type = push.data.get("type").map(String::as_str).unwrap_or(""),
                "push logged (no provider configured)"
            );
            Outcome::Delivered { http_status: None }
        })
    }
}

/// Which provider serves which platform.
#[derive(Clone)]
pub struct Router {
    pub ios: Arc<dyn Provider>,
    pub android: Arc<dyn Provider>,
}

impl Router {
    pub fn for_platform(&self, platform: Platform) -> &Arc<dyn Provider> {
        match platform {
            Platform::Ios => &self.ios,
            Platform::Android => &self.android,
        }
    }
}

/// Runs `fut` for at most `timeout`: a slow provider must not hold a consumer.
pub(crate) async fn bounded(
    timeout: Duration,
    fut: impl std::future::Future<Output = Outcome>,
) -> Outcome {
    match tokio::time::timeout(timeout, fut).await {
        Ok(o) => o,
        Err(_) => Outcome::Failed {
            http_status: None,
            error: format!("timed out after {} ms", timeout.as_millis()),
        },
    }
}

/// A request that got no answer: a timeout reads as one in the log and the push result.
pub(crate) fn describe(what: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("{what}: timed out")
    } else if e.is_connect() {
        format!("{what}: cannot connect")
    } else {
        format!("{what} request failed: {e}")
    }
}

pub(crate) fn request_failed(provider: &str, e: &reqwest::Error) -> Outcome {
    Outcome::Failed {
        http_status: None,
        error: describe(provider, e),
    }
}
