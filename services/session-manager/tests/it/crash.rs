//! session-manager is killed (SIGKILL) after `host_disconnected` and before the grace
//! deadline, started again, and the session still ends, once, with one `session.ended` event.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bus::Family;
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Options, Stack, free_port, stack_with};

const GRACE_SECONDS: i64 = 3;

/// A session-manager child process, killed with its guard (also when the test fails).
struct Service {
    child: Child,
    url: String,
}

impl Service {
    fn start(stack: &Stack) -> Service {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_session-manager"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &stack.db.url)
            .env("NATS_URL", testkit::nats_url())
            .env("NATS_NAMESPACE", &stack.ns)
            .env("AUTH_JWT_SECRET", testkit::JWT_SECRET)
            .env("LIVEKIT_URL", stack.sim.base_url())
            .env("LIVEKIT_API_KEY", testkit::LIVEKIT_KEY)
            .env("LIVEKIT_API_SECRET", testkit::LIVEKIT_SECRET)
            .env("HTTP_PORT", port.to_string())
            .env("HOST_GRACE_SECONDS", GRACE_SECONDS.to_string())
            .env("DB_POOL_SIZE", crate::SESSION_MANAGER_POOL.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("session-manager binary starts");
        Service {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn wait_healthy(&mut self, http: &reqwest::Client) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("session-manager exited at start-up: {status}");
            }
            if let Ok(res) = http.get(format!("{}/health", self.url)).send().await
                && res.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session-manager did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no graceful shutdown, no last outbox flush.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "{status}");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(stack: &Stack, sm: &Service, user: Uuid, id: Uuid) -> Value {
    let (status, body) = stack
        .call(
            reqwest::Method::GET,
            format!("{}/v1/sessions/{id}", sm.url),
            user,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["session"].clone()
}

async fn wait_status(stack: &Stack, sm: &Service, user: Uuid, id: Uuid, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = get(stack, sm, user, id).await;
        if last["status"] == json!(status) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("session never {status}: {last}");
}

/// Messages of `subject` in its JetStream stream.
async fn messages_on(stack: &Stack, subject: &str) -> u64 {
    let nats = async_nats::connect(testkit::nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let subjects = bus::Subjects::new(stack.ns.clone());
    let stream = js
        .get_stream(subjects.stream(Family::Session))
        .await
        .unwrap();
    let mut info = stream.info_with_subjects(subject).await.unwrap();
    let mut n = 0;
    while let Some((s, count)) = info.try_next().await.unwrap() {
        if s == subject {
            n += count as u64;
        }
    }
    n
}

#[tokio::test]
async fn a_killed_session_manager_still_ends_the_session_once_after_the_grace() {
    let stack = stack_with(Options {
        session_manager: false,
        ..Options::default()
    })
    .await;
    let creator = testkit::profile(&stack.db, "creator", true, None).await;
    let mut first = Service::start(&stack);
    first.wait_healthy(&stack.http).await;

    let (status, body) = stack
        .call(
            reqwest::Method::POST,
            format!("{}/v1/sessions", first.url),
            creator,
            Some(json!({"sessionType": "video_live", "title": "Crash", "accessType": "public"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id: Uuid = body["session"]["id"].as_str().unwrap().parse().unwrap();
    let room = format!("live_video_{id}");
    stack.join(&stack.token(creator, id).await).await;
    wait_status(&stack, &first, creator, id, "live").await;

    stack.sim("drop", &room, creator).await;
    wait_status(&stack, &first, creator, id, "host_disconnected").await;
    let due: chrono::DateTime<chrono::Utc> = stack
        .sql()
        .await
        .query_one(
            "SELECT due_at FROM deadlines WHERE subject_id = $1 AND kind = 'session.host_grace' AND fired_at IS NULL AND cancelled_at IS NULL",
            &[&id],
        )
        .await
        .expect("a pending host-grace deadline")
        .get(0);

    first.kill();
    assert!(
        stack
            .http
            .get(format!("{}/health", first.url))
            .send()
            .await
            .is_err(),
        "the process is gone"
    );
    // Past the grace, with nobody to fire the deadline.
    let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(500);
    assert!(
        wait < Duration::from_secs(GRACE_SECONDS as u64 + 2),
        "{wait:?}"
    );
    tokio::time::sleep(wait).await;
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM live_sessions WHERE id = $1 AND status = 'host_disconnected'",
                &[&id]
            )
            .await,
        1,
        "nothing ended it while no session-manager ran"
    );

    let mut second = Service::start(&stack);
    second.wait_healthy(&stack.http).await;
    let s = wait_status(&stack, &second, creator, id, "ended").await;
    assert_eq!(s["endReason"], json!("host_disconnected"), "{s}");
    assert_eq!(s["viewerCount"], json!(0));
    assert!(s["endedAt"].is_string());

    // Once: one deadline row, fired; one session.ended event in the outbox and in NATS.
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM deadlines WHERE subject_id = $1 AND kind = 'session.host_grace'",
                &[&id]
            )
            .await,
        1
    );
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM deadlines WHERE subject_id = $1 AND kind = 'session.host_grace' AND fired_at IS NOT NULL AND outcome = 'ended'",
                &[&id]
            )
            .await,
        1
    );
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM outbox WHERE subject LIKE '%.session.ended'",
                &[]
            )
            .await,
        1
    );
    testkit::eventually(Duration::from_secs(10), "the outbox published", || async {
        (stack
            .count(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                &[],
            )
            .await
            == 0)
            .then_some(())
    })
    .await;
    let subject = bus::Subjects::new(stack.ns.clone()).subject(Family::Session, "ended");
    assert_eq!(messages_on(&stack, &subject).await, 1);
    // Still one a moment later (no late duplicate from either process).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(messages_on(&stack, &subject).await, 1);
    let live_subject = bus::Subjects::new(stack.ns.clone()).subject(Family::Session, "live");
    assert_eq!(messages_on(&stack, &live_subject).await, 1);
    assert!(
        !stack.sim_rooms().await.to_string().contains(&room),
        "the room is deleted"
    );
    drop(second);
}
