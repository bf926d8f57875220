//! The engine: `connections` workers share one HTTP/1.1 keep-alive client and take the
//! prepared requests in order until none is left (or the deadline passes).
//!
//! It is a closed loop: each worker sends its next request as soon as the previous answer is
//! read, so the offered load adapts to the service and latencies are not corrected for
//! coordinated omission. That is what a join storm through a pool of gateway connections
//! looks like, and it keeps the figures comparable from run to run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};

/// Latencies up to a minute are recorded with three significant digits.
const HIGHEST_LATENCY_US: u64 = 60_000_000;

/// One request, built before the clock starts: everything but the URL.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Shared bytes: sending clones a reference, not the body.
    pub body: Bytes,
}

/// Where every request of a run goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: reqwest::Url,
    pub content_type: HeaderValue,
}

/// What one phase of a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Requests that got an answer or failed (every request taken).
    pub requests: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Everything else, by `"<status> <errorCode>"` or transport error kind.
    pub errors: BTreeMap<String, u64>,
    /// Latency of the 2xx answers (headers sent until the whole body read), in µs.
    pub latency_us: Histogram<u64>,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
}

impl Outcome {
    pub(crate) fn empty() -> Self {
        Outcome {
            requests: 0,
            ok: 0,
            errors: BTreeMap::new(),
            latency_us: Histogram::new_with_bounds(1, HIGHEST_LATENCY_US, 3)
                .expect("static histogram bounds"),
            elapsed: Duration::ZERO,
        }
    }

    pub(crate) fn record(&mut self, result: Result<(), String>, latency: Duration) {
        self.requests += 1;
        match result {
            Ok(()) => {
                self.ok += 1;
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency_us.saturating_record(us.max(1));
            }
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.ok += other.ok;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds merge");
    }
}

/// One HTTP/1.1 client for every worker, keeping up to `connections` idle connections so
/// every worker reuses its own; no proxy from the environment is ever used.
pub fn client(connections: usize, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(connections)
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// Sends every request of `requests` with `connections` concurrent workers; stops early
/// when `limit` has passed (requests in flight finish and are counted).
pub async fn run(
    client: &reqwest::Client,
    target: &Target,
    requests: Arc<[Prepared]>,
    connections: usize,
    limit: Option<Duration>,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let stop_at = limit.map(|l| started + l);
    let workers: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (client, target) = (client.clone(), target.clone());
            let (requests, next) = (requests.clone(), next.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::empty();
                while stop_at.is_none_or(|t| Instant::now() < t) {
                    let Some(request) = requests.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let sent = Instant::now();
                    let result = send(&client, &target, request).await;
                    outcome.record(result, sent.elapsed());
                }
                outcome
            })
        })
        .collect();
    let mut total = Outcome::empty();
    for worker in workers {
        match worker.await {
            Ok(outcome) => total.merge(outcome),
            Err(e) => *total.errors.entry(format!("worker: {e}")).or_default() += 1,
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// Sends one request and reads the whole answer; `Err` names what went wrong.
async fn send(client: &reqwest::Client, target: &Target, request: &Prepared) -> Result<(), String> {
    let mut builder = client
        .post(target.url.clone())
        .header(CONTENT_TYPE, target.content_type.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name.clone(), value.clone());
    }
    let response = builder
        .body(request.body.clone())
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| transport_error(&e))?;
    match classify(status, &body) {
        None => Ok(()),
        Some(kind) => Err(kind),
    }
}

fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    format!("error: {kind}")
}

/// `None` for a success; otherwise the status, followed by the envelope's `errorCode` when
/// the body carries one (`"429 RATE_LIMITED"`), so a report says why without the logs.
pub fn classify(status: StatusCode, body: &[u8]) -> Option<String> {
    if status.is_success() {
        return None;
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope {
        error_code: Option<String>,
    }
    let code = serde_json::from_slice::<Envelope>(body)
        .ok()
        .and_then(|e| e.error_code);
    Some(match code {
        Some(code) => format!("{} {code}", status.as_u16()),
        None => status.as_u16().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_answers() {
        assert_eq!(classify(StatusCode::OK, b"{}"), None);
        assert_eq!(classify(StatusCode::CREATED, b""), None);
        assert_eq!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                br#"{"success":false,"error":"slow down","errorCode":"RATE_LIMITED"}"#
            )
            .as_deref(),
            Some("429 RATE_LIMITED")
        );
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, b"<html>").as_deref(),
            Some("502")
        );
    }

    #[test]
    fn outcomes_merge() {
        let mut a = Outcome::empty();
        a.record(Ok(()), Duration::from_millis(2));
        a.record(Err("429".into()), Duration::from_millis(1));
        let mut b = Outcome::empty();
        b.record(Ok(()), Duration::from_micros(0));
        b.record(Err("429".into()), Duration::from_millis(1));
        b.record(Err("error: timeout".into()), Duration::from_secs(10));
        a.merge(b);
        assert_eq!((a.requests, a.ok), (5, 2));
        assert_eq!(a.errors["429"], 2);
        assert_eq!(a.errors["error: timeout"], 1);
        // Only successes are timed; a zero latency still counts (as 1 µs).
        assert_eq!(a.latency_us.len(), 2);
        assert_eq!(a.latency_us.min(), 1);
    }
}
