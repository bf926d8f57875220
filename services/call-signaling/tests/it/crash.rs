//! call-signaling is killed (SIGKILL) while a call rings, started again, and the call still
//! becomes `missed`, once, with one `call.missed` event in the outbox and in NATS.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Options, Stack, stack_with};

const RING_SECONDS: u64 = 3;

/// A call-signaling child process, killed with its guard (also when the test fails).
struct Service {
    child: Child,
    url: String,
}

impl Service {
    fn start(stack: &Stack) -> Service {
        let port = crate::listener().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_call-signaling"))
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
            .env("CALL_RING_TIMEOUT_SECONDS", RING_SECONDS.to_string())
            .env("CALL_PUSH_TIMEOUT_SECONDS", "30")
            .env("DB_POOL_SIZE", crate::POOL.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("call-signaling binary starts");
        Service {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn wait_healthy(&mut self, http: &reqwest::Client) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("call-signaling exited at start-up: {status}");
            }
            if let Ok(res) = http.get(format!("{}/health", self.url)).send().await
                && res.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call-signaling did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

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

async fn status_of(stack: &Stack, id: Uuid) -> String {
    stack
        .sql()
        .await
        .query_one("SELECT status FROM calls WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

/// Messages of `subject` in the call stream.
async fn messages_on(stack: &Stack, subject: &str) -> u64 {
    let nats = async_nats::connect(testkit::nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let stream = js
        .get_stream(stack.subjects.stream(bus::Family::Call))
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
async fn a_killed_call_signaling_still_misses_the_ringing_call_once() {
    let stack = stack_with(Options {
        call_signaling: false,
        ..Options::default()
    })
    .await;
    let a = stack.user("alice").await;
    let b = stack.user("bob").await;
    let mut first = Service::start(&stack);
    first.wait_healthy(&stack.http).await;
    let (status, body): (_, Value) = stack
        .request(
            reqwest::Method::POST,
            format!("{}/v1/calls", first.url),
            a,
            Some(json!({"calleeId": b, "callType": "audio_call"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id: Uuid = body["call"]["id"].as_str().unwrap().parse().unwrap();
    stack.push_result(id, b, true, 1, "").await;
    testkit::eventually(Duration::from_secs(20), "the call to ring", || async {
        (status_of(&stack, id).await == "ringing").then_some(())
    })
    .await;
    let due: chrono::DateTime<chrono::Utc> = stack
        .sql()
        .await
        .query_one(
            "SELECT due_at FROM deadlines WHERE subject_id = $1 AND kind = 'call.ring_timeout' AND fired_at IS NULL AND cancelled_at IS NULL",
            &[&id],
        )
        .await
        .expect("a pending ring timeout")
        .get(0);

    first.kill();
    // Past the timeout, with nobody to fire it.
    let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(500);
    tokio::time::sleep(wait).await;
    assert_eq!(
        status_of(&stack, id).await,
        "ringing",
        "nothing moved it while no call-signaling ran"
    );

    let mut second = Service::start(&stack);
    second.wait_healthy(&stack.http).await;
    testkit::eventually(Duration::from_secs(20), "the call to be missed", || async {
        (status_of(&stack, id).await == "missed").then_some(())
    })
    .await;
    let (_, body) = stack
        .request(
            reqwest::Method::GET,
            format!("{}/v1/calls/{id}", second.url),
            b,
            None,
        )
        .await;
    assert_eq!(body["call"]["endedReason"], json!("no_answer"), "{body}");

    // Once: one ring-timeout row, fired; one call.missed in the outbox and in NATS.
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM deadlines WHERE subject_id = $1 AND kind = 'call.ring_timeout' AND fired_at IS NOT NULL",
                &[&id]
            )
            .await,
        1
    );
    assert_eq!(stack.events(id, "missed").await, 1);
    let subject = stack.subjects.subject(bus::Family::Call, "missed");
    testkit::eventually(Duration::from_secs(10), "call.missed in NATS", || async {
        (messages_on(&stack, &subject).await == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(messages_on(&stack, &subject).await, 1, "published once");
    assert_eq!(stack.count("SELECT count(*) FROM call_busy", &[]).await, 0);
    drop(second);
    stack.shutdown().await;
}
