//! End to end over HTTP with the real notifier pushing to the APNs and FCM stand-ins:
//! A calls B, B's iOS VoIP token gets the VoIP push, the call rings, B accepts, both get
//! tokens and join livekit-sim, the call goes live, A ends it, the room is deleted; and the
//! missed, rejected, cancelled, busy and no-device paths.

use std::time::Duration;

use notifier::push::{ApnsConfig, PushConfig};
use serde_json::{Value, json};
use uuid::Uuid;
use web::config::Secret;

use crate::{Options, Stack, assert_error, stack_with};

struct World {
    s: Stack,
    push: push_sim::PushSim,
    notifier: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn world(options: Options) -> World {
    let s = stack_with(options).await;
    let push = push_sim::PushSim::start().await.unwrap();
    let a = push.apns.credentials();
    let config = notifier::Config {
        common: crate::common("notifier", &s.db, &s.ns),
        push: PushConfig {
            apns: Some(ApnsConfig {
                url: push.apns.url().to_owned(),
                key_id: a.key_id.clone(),
                team_id: a.team_id.clone(),
                topic: a.topic.clone(),
                key_pem: Secret::new(a.keys.private_pem.clone()),
            }),
            ..PushConfig::default()
        },
        stream: notifier::stream::StreamConfig::default(),
    };
    let app = notifier::Application::build_with_listener(config, crate::listener())
        .await
        .unwrap();
    let notifier = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async move {
                let _ = rx.await;
            })
            .await;
    });
    World {
        s,
        push,
        notifier,
        stop: Some(tx),
        task,
    }
}

impl World {
    /// Registers an iOS device of `kind` for `user`; returns its token.
    async fn device(&self, user: Uuid, kind: &str) -> String {
        // A fresh 32-byte hex token, as APNs hands out.
        let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let (status, body) = self
            .s
            .request(
                reqwest::Method::PUT,
                format!("{}/v1/devices", self.notifier),
                user,
                Some(json!({"platform": "ios", "kind": kind, "token": token})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        token
    }

    /// Waits for the APNs pushes to `token` to satisfy `pred`.
    async fn pushes(
        &self,
        token: &str,
        what: &str,
        pred: impl Fn(&[push_sim::ApnsPush]) -> bool,
    ) -> Vec<push_sim::ApnsPush> {
        testkit::eventually(Duration::from_secs(20), what, || async {
            let got = self.push.apns.received_for(token);
            pred(&got).then_some(got)
        })
        .await
    }

    async fn shutdown(mut self) {
        self.stop.take();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        self.push.stop().await;
        self.s.shutdown().await;
    }
}

fn voip(p: &push_sim::ApnsPush) -> bool {
    p.push_type == "voip"
}

#[tokio::test]
async fn a_calls_b_who_rings_by_voip_push_accepts_and_talks_until_a_ends() {
    let w = world(Options::default()).await;
    let s = &w.s;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let token = w.device(b, "voip").await;

    let id = s.start_call(a, b).await;
    let pushes = w.pushes(&token, "the VoIP push", |p| !p.is_empty()).await;
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let push = &pushes[0];
    assert_eq!(push.push_type, "voip");
    assert_eq!(
        push.topic,
        format!("{}.voip", w.push.apns.credentials().topic)
    );
    assert_eq!(push.priority, 10);
    assert!(
        push.payload.to_string().contains(&id.to_string()),
        "the push names the call: {}",
        push.payload
    );
    let call = s.wait_status(a, id, "ringing").await;
    let room = call["roomName"].as_str().unwrap().to_owned();

    let (status, body) = s.act(b, id, "accept").await;
    assert_eq!(status, 200, "{body}");
    for (user, role) in [(a, "caller"), (b, "callee")] {
        let (status, body) = s.call_token(user, id).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["role"], json!(role));
        assert_eq!(body["roomName"], json!(room));
    }
    s.join(a, id).await;
    s.join(b, id).await;
    s.wait_status(a, id, "live").await;
    let (status, body) = s.act(a, id, "end").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["call"]["status"], json!("ended"));
    testkit::eventually(
        Duration::from_secs(10),
        "the room to be deleted",
        || async { (!s.sim_rooms().await.contains(&room)).then_some(()) },
    )
    .await;
    // The ring was the only VoIP push.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        w.push
            .apns
            .received_for(&token)
            .iter()
            .filter(|p| voip(p))
            .count(),
        1
    );
    let delivered = s
        .count(
            "SELECT count(*) FROM push_deliveries WHERE user_id = $1 AND provider = 'apns' AND push_kind = 'voip' AND status = 'delivered'",
            &[&b],
        )
        .await;
    assert_eq!(delivered, 1);
    w.shutdown().await;
}

#[tokio::test]
async fn missed_rejected_cancelled_busy_and_no_device() {
    let mut o = Options::default();
    o.timings.ring_timeout = Duration::from_secs(2);
    let w = world(o).await;
    let s = &w.s;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let nobody = s.user("no_device").await;
    let voip_token = w.device(b, "voip").await;
    let alert_token = w.device(b, "standard").await;

    // Missed: it rings out; B gets a missed-call notification, as a standard push.
    let id = s.start_call(a, b).await;
    s.wait_status(a, id, "ringing").await;
    let call = s.wait_status(a, id, "missed").await;
    assert_eq!(call["endedReason"], json!("no_answer"));
    let missed = w
        .pushes(&alert_token, "the missed-call notification", |p| {
            !p.is_empty()
        })
        .await;
    assert!(missed.iter().all(|p| !voip(p)), "{missed:?}");
    assert!(missed.iter().any(|p| p.push_type == "alert"), "{missed:?}");

    // Rejected.
    let id = s.start_call(a, b).await;
    s.wait_status(a, id, "ringing").await;
    let (status, body) = s.act(b, id, "reject").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["call"]["status"], json!("rejected"));

    // Cancelled while ringing: the stop reaches B, never as a VoIP push.
    let voip_before = w.push.apns.received_for(&voip_token).len();
    let alerts_before = w.push.apns.received_for(&alert_token).len();
    let id = s.start_call(a, b).await;
    s.wait_status(a, id, "ringing").await;
    let (status, body) = s.act(a, id, "cancel").await;
    assert_eq!(status, 200, "{body}");
    w.pushes(&alert_token, "the cancel notification", |p| {
        p.len() > alerts_before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let voips = w.push.apns.received_for(&voip_token);
    assert_eq!(
        voips.len(),
        voip_before + 1,
        "one VoIP push: the ring, not the cancel"
    );
    assert!(voips.iter().all(voip));

    // Busy: B is in a call with A; C's call is refused and kept.
    let first = s.start_call(a, b).await;
    s.wait_status(a, first, "ringing").await;
    let (status, body) = s.initiate(c, b, "audio_call").await;
    assert_error(status, &body, 409, "BUSY");
    let (_, body) = s
        .request(
            reqwest::Method::GET,
            format!("{}/v1/calls?status=busy", s.calls),
            c,
            None,
        )
        .await;
    assert_eq!(body["calls"].as_array().map(Vec::len), Some(1), "{body}");
    s.act(a, first, "cancel").await;

    // No device: the notifier says so at once and the call fails.
    let id = s.start_call(a, nobody).await;
    let call: Value = s.wait_status(a, id, "failed").await;
    assert_eq!(call["endedReason"], json!("no_device"));
    w.shutdown().await;
}
