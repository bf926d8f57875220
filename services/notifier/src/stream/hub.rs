//! The connected clients of this replica: user → open connections, and each user's recent
//! events for `Last-Event-ID` resume.
//!
//! Locking: the users live in shards behind plain mutexes, held only for map and channel
//! operations (never across an `.await`), so a fan-out to a big session and the connects of
//! other users interleave. Event delivery and the replay of a resuming connection happen
//! under the same shard lock: an event is either in the replay or sent live, never both.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};
use uuid::Uuid;

use super::audience::Audiences;
use super::encode;
use super::{StreamConfig, lock};

const SHARDS: usize = 64;

/// What a resuming client sent in `Last-Event-ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No header: a fresh stream.
    Fresh,
    /// The id of the last event the client saw.
    After(Uuid),
    /// A header that is no event id of ours: the client cannot know what it missed.
    Unknown,
}

impl Resume {
    pub fn parse(header: Option<&str>) -> Resume {
        match header.map(str::trim) {
            None | Some("") => Resume::Fresh,
            Some(v) => Uuid::parse_str(v).map_or(Resume::Unknown, Resume::After),
        }
    }
}

/// Why a connection was closed by the hub (`sse_clients_dropped_total{reason}`).
#[derive(Debug, Clone, Copy)]
enum DropReason {
    /// Its channel was full: the client does not read fast enough.
    Slow,
    /// The user opened more connections than allowed; the oldest goes.
    Limit,
    /// The service is stopping.
    Shutdown,
}

impl DropReason {
    fn as_str(self) -> &'static str {
        match self {
            DropReason::Slow => "slow_client",
            DropReason::Limit => "connection_limit",
            DropReason::Shutdown => "shutdown",
        }
    }
}

struct Conn {
    id: u64,
    tx: mpsc::Sender<Bytes>,
}

struct Buffered {
    id: Uuid,
    at: Instant,
    frame: Bytes,
}

#[derive(Default)]
struct UserEntry {
    /// Oldest first.
    conns: Vec<Conn>,
    /// Recent events, oldest first, bounded by count and age.
    ring: VecDeque<Buffered>,
    /// When the last connection went; the entry (and its ring) is kept for the resume window.
    idle_since: Option<Instant>,
}

/// The replica's clients.
pub struct Hub {
    shards: Box<[Mutex<HashMap<Uuid, UserEntry>>]>,
    hasher: RandomState,
    next_conn: AtomicU64,
    closed: AtomicBool,
    pub(super) config: StreamConfig,
    pub(super) pool: db::Pool,
    /// Who is in which session (only the session feed and the sweeper touch it).
    pub(super) audiences: Mutex<Audiences>,
    connected: metrics::Gauge,
    sent: metrics::Counter,
}

/// The hub is closed (the service is stopping).
#[derive(Debug, thiserror::Error)]
#[error("the event stream is shutting down")]
pub struct Closed;

impl Hub {
    pub fn new(config: StreamConfig, pool: db::Pool) -> Hub {
        Hub {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            next_conn: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            config,
            pool,
            audiences: Mutex::new(Audiences::default()),
            connected: metrics::gauge!("sse_clients_connected"),
            sent: metrics::counter!("sse_events_sent_total"),
        }
    }

    fn shard(&self, user: Uuid) -> MutexGuard<'_, HashMap<Uuid, UserEntry>> {
        let i = (self.hasher.hash_one(user) as usize) % SHARDS;
        lock(&self.shards[i])
    }

    /// Opens a connection for `user`: what it missed since `resume` (or a resync), then live
    /// events. The oldest connection goes when the user is at the limit.
    pub fn connect(self: &Arc<Self>, user: Uuid, resume: Resume) -> Result<EventStream, Closed> {
        let (tx, rx) = mpsc::channel(self.config.client_buffer);
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut preface = VecDeque::new();
        preface.push_back(Bytes::from_static(encode::RETRY));
        let evicted = {
            let mut shard = self.shard(user);
            if self.closed.load(Ordering::Acquire) {
                return Err(Closed);
            }
            let entry = shard.entry(user).or_default();
            trim(&mut entry.ring, &self.config, Instant::now());
            match resume {
                Resume::Fresh => {}
                Resume::After(last) => match entry.ring.iter().position(|b| b.id == last) {
                    Some(i) => {
                        preface.extend(entry.ring.iter().skip(i + 1).map(|b| b.frame.clone()))
                    }
                    None => preface.push_back(encode::resync_frame("unknown_or_expired_event_id")),
                },
                Resume::Unknown => {
                    preface.push_back(encode::resync_frame("unknown_or_expired_event_id"))
                }
            }
            let mut evicted = 0;
            while entry.conns.len() >= self.config.max_connections_per_user.max(1) {
                entry.conns.remove(0);
                evicted += 1;
            }
            entry.conns.push(Conn { id, tx });
            entry.idle_since = None;
            evicted
        };
        self.connected.increment(1.0);
        self.dropped(DropReason::Limit, evicted);
        Ok(EventStream {
            preface,
            rx,
            _guard: Guard {
                hub: self.clone(),
                user,
                id,
            },
        })
    }

    /// Delivers one encoded event to each of `users` that has an entry on this replica
    /// (connected, or recently connected: the ring keeps it for a resume). Returns how many
    /// connections it was sent to. A full channel closes that connection.
    pub fn deliver(&self, users: impl IntoIterator<Item = Uuid>, id: Uuid, frame: &Bytes) -> usize {
        let now = Instant::now();
        let mut sent = 0;
        let mut slow = 0;
        let mut gone = 0;
        for user in users {
            let mut shard = self.shard(user);
            let Some(entry) = shard.get_mut(&user) else {
                continue;
            };
            entry.ring.push_back(Buffered {
                id,
                at: now,
                frame: frame.clone(),
            });
            trim(&mut entry.ring, &self.config, now);
            entry.conns.retain(|c| match c.tx.try_send(frame.clone()) {
                Ok(()) => {
                    sent += 1;
                    true
                }
                Err(TrySendError::Full(_)) => {
                    slow += 1;
                    false
                }
                Err(TrySendError::Closed(_)) => {
                    gone += 1;
                    false
                }
            });
            if entry.conns.is_empty() && entry.idle_since.is_none() {
                entry.idle_since = Some(now);
            }
        }
        self.sent.increment(sent as u64);
        self.dropped(DropReason::Slow, slow);
        self.connected.decrement(f64::from(gone));
        sent
    }

    /// The heartbeat: one comment to every connection. A full channel skips it (that client
    /// has data waiting already).
    pub fn heartbeat(&self) {
        let hb = Bytes::from_static(encode::HEARTBEAT);
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for entry in shard.values() {
                for c in &entry.conns {
                    let _ = c.tx.try_send(hb.clone());
                }
            }
        }
    }

    /// Forgets users gone for longer than the resume window, and old ring entries.
    pub fn sweep(&self) {
        let now = Instant::now();
        let window = self.config.resume_window;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.retain(|_, e| {
                trim(&mut e.ring, &self.config, now);
                !e.conns.is_empty() || e.idle_since.is_some_and(|t| now.duration_since(t) < window)
            });
        }
    }

    /// Closes every stream and refuses new ones (the service is stopping).
    pub fn close_all(&self) {
        self.closed.store(true, Ordering::Release);
        let mut closed = 0;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            for entry in shard.values_mut() {
                closed += entry.conns.len();
                entry.conns.clear();
            }
        }
        self.dropped(DropReason::Shutdown, closed);
        self.connected.decrement(closed as f64);
    }

    /// Open connections of this replica (tests, health).
    pub fn connections(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).values().map(|e| e.conns.len()).sum::<usize>())
            .sum()
    }

    fn disconnect(&self, user: Uuid, id: u64) {
        let removed = {
            let mut shard = self.shard(user);
            let Some(entry) = shard.get_mut(&user) else {
                return;
            };
            let before = entry.conns.len();
            entry.conns.retain(|c| c.id != id);
            if entry.conns.is_empty() && entry.idle_since.is_none() {
                entry.idle_since = Some(Instant::now());
            }
            before != entry.conns.len()
        };
        if removed {
            self.connected.decrement(1.0);
        }
    }

    fn dropped(&self, reason: DropReason, n: usize) {
        if n > 0 {
            metrics::counter!("sse_clients_dropped_total", "reason" => reason.as_str())
                .increment(n as u64);
            if !matches!(reason, DropReason::Shutdown) {
                self.connected.decrement(n as f64);
            }
            tracing::debug!(
                reason = reason.as_str(),
                connections = n,
                "event stream connections closed"
            );
        }
    }
}

fn trim(ring: &mut VecDeque<Buffered>, config: &StreamConfig, now: Instant) {
    while ring.len() > config.resume_events {
        ring.pop_front();
    }
    while ring
        .front()
        .is_some_and(|b| now.duration_since(b.at) > config.resume_window)
    {
        ring.pop_front();
    }
}

/// Unregisters its connection when the response body is dropped (client gone).
struct Guard {
    hub: Arc<Hub>,
    user: Uuid,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.hub.disconnect(self.user, self.id);
    }
}

/// The body of one `GET /v1/events` response: the preface (retry, replay or resync), then
/// whatever the hub sends; it ends when the hub drops the connection's sender.
pub struct EventStream {
    preface: VecDeque<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    _guard: Guard,
}

impl futures_util::Stream for EventStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(b) = self.preface.pop_front() {
            return Poll::Ready(Some(Ok(b)));
        }
        self.rx.poll_recv(cx).map(|b| b.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn hub(config: StreamConfig) -> Arc<Hub> {
        // The pool connects lazily: these tests never touch the database.
        let pool = db::connect_pool("postgres://nobody@127.0.0.1:1/none", 1).unwrap();
        Arc::new(Hub::new(config, pool))
    }

    async fn next(s: &mut EventStream) -> Option<Bytes> {
        s.next().await.map(|r| r.unwrap())
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_is_dropped_others_keep_receiving() {
        let hub = hub(StreamConfig {
            client_buffer: 2,
            ..Default::default()
        });
        let (slow, fast) = (Uuid::new_v4(), Uuid::new_v4());
        let mut s = hub.connect(slow, Resume::Fresh).unwrap();
        let mut f = hub.connect(fast, Resume::Fresh).unwrap();
        assert_eq!(next(&mut f).await.unwrap(), encode::RETRY);
        for i in 0..3 {
            let frame = Bytes::from(format!("e{i}"));
            hub.deliver([slow, fast], Uuid::new_v4(), &frame);
            assert_eq!(next(&mut f).await.unwrap(), frame);
        }
        assert_eq!(hub.connections(), 1);
        // The slow one gets what was buffered, then its stream ends.
        assert_eq!(next(&mut s).await.unwrap(), encode::RETRY);
        assert_eq!(next(&mut s).await.unwrap(), "e0");
        assert_eq!(next(&mut s).await.unwrap(), "e1");
        assert!(next(&mut s).await.is_none());
    }

    #[tokio::test]
    async fn resume_replays_after_the_id_and_trims_to_the_count() {
        let hub = hub(StreamConfig {
            resume_events: 3,
            ..Default::default()
        });
        let u = Uuid::new_v4();
        drop(hub.connect(u, Resume::Fresh).unwrap());
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            hub.deliver([u], *id, &Bytes::from(format!("e{i}")));
        }
        let mut s = hub.connect(u, Resume::After(ids[2])).unwrap();
        assert_eq!(next(&mut s).await.unwrap(), encode::RETRY);
        assert_eq!(next(&mut s).await.unwrap(), "e3");
        assert_eq!(next(&mut s).await.unwrap(), "e4");
        // ids[1] fell out of the ring (3 kept): resync.
        let mut old = hub.connect(u, Resume::After(ids[1])).unwrap();
        assert_eq!(next(&mut old).await.unwrap(), encode::RETRY);
        assert!(
            String::from_utf8(next(&mut old).await.unwrap().to_vec())
                .unwrap()
                .starts_with("event: resync\n")
        );
    }

    #[test]
    fn last_event_id_parsing() {
        let id = Uuid::new_v4();
        assert_eq!(Resume::parse(None), Resume::Fresh);
        assert_eq!(Resume::parse(Some(" ")), Resume::Fresh);
        assert_eq!(Resume::parse(Some(&id.to_string())), Resume::After(id));
        assert_eq!(Resume::parse(Some("42")), Resume::Unknown);
    }
}
