//! Webhook delivery as LiveKit does it: one ordered queue per (URL, room), retries with backoff,
//! silent drops when a queue is too long or an event waited too long.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livekit::Credentials;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

/// LiveKit's limits (see LIVEKIT.md): up to 5 attempts, at most 200 queued per room, and an
/// event that waited 30 s is dropped.
const MAX_ATTEMPTS: u32 = 5;
const MAX_QUEUED: usize = 200;
const MAX_WAIT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

struct Job {
    id: String,
    event: String,
    body: Arc<Vec<u8>>,
    queued_at: Instant,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    running: bool,
}

pub(crate) struct Dispatcher {
    client: reqwest::Client,
    creds: Credentials,
    retry_base: Duration,
    rt: tokio::runtime::Handle,
    queues: Mutex<HashMap<(String, String), Queue>>,
    pending: AtomicUsize,
}

impl Dispatcher {
    pub(crate) fn new(
        creds: Credentials,
        retry_base: Duration,
        rt: tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            client,
            creds,
            retry_base,
            rt,
            queues: Mutex::new(HashMap::new()),
            pending: AtomicUsize::new(0),
        })
    }

    /// Webhooks queued or in delivery.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Queues `body` for `url` behind the earlier events of `room`.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        url: &str,
        room: &str,
        id: &str,
        event: &str,
        body: Arc<Vec<u8>>,
    ) {
        let key = (url.to_owned(), room.to_owned());
        let mut queues = self.queues.lock().expect("webhook queues");
        let queue = queues.entry(key.clone()).or_default();
        if queue.jobs.len() >= MAX_QUEUED {
            tracing::warn!(
                event.id = id,
                event.name = event,
                room.name = room,
                "webhook queue full, event dropped"
            );
            return;
        }
        queue.jobs.push_back(Job {
            id: id.to_owned(),
            event: event.to_owned(),
            body,
            queued_at: Instant::now(),
        });
        self.pending.fetch_add(1, Ordering::SeqCst);
        if !queue.running {
            queue.running = true;
            let this = Arc::clone(self);
            self.rt.spawn(async move { this.run_queue(key).await });
        }
    }

    async fn run_queue(self: Arc<Self>, key: (String, String)) {
        loop {
            let job = {
                let mut queues = self.queues.lock().expect("webhook queues");
                let Some(queue) = queues.get_mut(&key) else {
                    return;
                };
                match queue.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        queues.remove(&key);
                        return;
                    }
                }
            };
            if job.queued_at.elapsed() > MAX_WAIT {
                tracing::warn!(event.id = %job.id, event.name = %job.event, "webhook waited too long, dropped");
            } else {
                self.deliver(&key.0, &job).await;
            }
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn deliver(&self, url: &str, job: &Job) {
        for attempt in 0..MAX_ATTEMPTS {
            // Signed per attempt, as LiveKit does: a fresh 5-minute token over the same bytes.
            let auth = livekit::sign_webhook(&self.creds, &job.body);
            let sent = self
                .client
                .post(url)
                .header(CONTENT_TYPE, "application/webhook+json")
                .header(AUTHORIZATION, auth)
                .body(job.body.as_ref().clone())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    tracing::debug!(event.id = %job.id, event.name = %job.event, url, "webhook delivered");
                    return;
                }
                Ok(resp) if !resp.status().is_server_error() => {
                    tracing::warn!(event.id = %job.id, event.name = %job.event, url, status = resp.status().as_u16(), "webhook refused, not retried");
                    return;
                }
                Ok(resp) => {
                    tracing::warn!(event.id = %job.id, event.name = %job.event, url, status = resp.status().as_u16(), attempt, "webhook failed");
                }
                Err(e) => {
                    tracing::warn!(event.id = %job.id, event.name = %job.event, url, error = %e, attempt, "webhook failed");
                }
            }
            if attempt + 1 < MAX_ATTEMPTS {
                tokio::time::sleep(self.retry_base * (1 << attempt)).await;
            }
        }
        tracing::warn!(event.id = %job.id, event.name = %job.event, url, "webhook given up");
    }
}
