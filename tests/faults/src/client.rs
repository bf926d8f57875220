//! The workload's HTTP client, retrying like the mobile app does: a connection that fails,
//! a 5xx or a 429 is tried again (after `Retry-After` for a 429) until the retry budget is
//! spent; any other answer is final. During a fault window such failures are expected;
//! what the suite judges is the state everything ends in.
//!
//! A request with no answer within [`REQUEST_TIMEOUT`] is a hang: counted, and reported as a
//! violation (a service that is down refuses connections at once; one that is up answers).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

/// No request of the suite may take longer: beyond it, something hangs.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the processes listen (their ports survive restarts).
#[derive(Debug, Clone)]
pub struct Urls {
    pub token_issuer: String,
    pub session_manager: String,
    pub call_signaling: String,
    pub notifier: String,
    pub livekit_sim: String,
}

impl Urls {
    pub fn of(stack: &system::Stack) -> Urls {
        use system::Svc;
        Urls {
            token_issuer: stack.url(Svc::TokenIssuer),
            session_manager: stack.url(Svc::SessionManager),
            call_signaling: stack.url(Svc::CallSignaling),
            notifier: stack.url(Svc::Notifier),
            livekit_sim: stack.url(Svc::LivekitSim),
        }
    }
}

/// A final answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// How many attempts it took (1 = no retry).
    pub attempts: u32,
    /// `Retry-After` in seconds, when the answer had one.
    pub retry_after: Option<u64>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `errorCode` of a failure envelope ("" when none).
    pub fn code(&self) -> &str {
        self.body["errorCode"].as_str().unwrap_or("")
    }
}

/// No final answer within the retry budget.
#[derive(Debug, Clone)]
pub struct GaveUp {
    pub what: String,
    pub attempts: u32,
    pub last: String,
}

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: no answer after {} attempts (last: {})",
            self.what, self.attempts, self.last
        )
    }
}

/// Counters over every request of a trial.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Requests that got no answer within [`REQUEST_TIMEOUT`].
    pub hung: AtomicU64,
}

/// The client of one trial.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub urls: Urls,
    pub budget: Duration,
    pub counters: Arc<Counters>,
    /// Descriptions of the requests that hung.
    pub hangs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Api {
    pub fn new(urls: Urls, budget: Duration) -> anyhow::Result<Api> {
        Ok(Api {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .pool_max_idle_per_host(4)
                .build()?,
            urls,
            budget,
            counters: Arc::default(),
            hangs: Arc::default(),
        })
    }

    /// One attempt, no retry: the answer, or why there was none.
    pub async fn once(
        &self,
        user: Option<Uuid>,
        method: Method,
        url: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, String> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self.http.request(method.clone(), url);
        if let Some(user) = user {
            req = req.bearer_auth(testkit::token_for(user));
        }
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let started = Instant::now();
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let text = resp.text().await.unwrap_or_default();
                Ok(Answer {
                    status,
                    body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    attempts: 1,
                    retry_after,
                })
            }
            Err(e) => {
                if e.is_timeout() {
                    self.counters.hung.fetch_add(1, Ordering::Relaxed);
                    self.hangs.lock().expect("hangs").push(format!(
                        "{method} {url}: no answer within {:?}",
                        started.elapsed()
                    ));
                }
                Err(format!("{e}"))
            }
        }
    }

    /// Retries until a final answer or the budget is spent.
    pub async fn send(
        &self,
        user: Option<Uuid>,
        method: Method,
        url: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, GaveUp> {
        let started = Instant::now();
        let mut attempts = 0;
        let mut pause = Duration::from_millis(100);
        loop {
            attempts += 1;
            let last = match self
                .once(user, method.clone(), url, body, idempotency_key)
                .await
            {
                Ok(a) if a.status < 500 && a.status != 429 => {
                    return Ok(Answer { attempts, ..a });
                }
                Ok(a) => {
                    if let Some(s) = a.retry_after {
                        pause = Duration::from_secs(s.clamp(1, 2));
                    }
                    format!("{} {}", a.status, a.code())
                }
                Err(e) => e,
            };
            if started.elapsed() + pause > self.budget {
                return Err(GaveUp {
                    what: format!("{method} {url}"),
                    attempts,
                    last,
                });
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(800));
        }
    }

    pub async fn post(&self, user: Uuid, url: String, body: Value) -> Result<Answer, GaveUp> {
        self.send(Some(user), Method::POST, &url, Some(&body), None)
            .await
    }

    pub async fn get(&self, user: Uuid, url: String) -> Result<Answer, GaveUp> {
        self.send(Some(user), Method::GET, &url, None, None).await
    }

    /// A livekit-sim control request (`/sim/...`), retried like the rest.
    pub async fn sim(&self, path: &str, body: Value) -> Result<Answer, GaveUp> {
        let url = format!("{}{path}", self.urls.livekit_sim);
        self.send(None, Method::POST, &url, Some(&body), None).await
    }
}
