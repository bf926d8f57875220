//! `GET /v1/events` on real HTTP, with events published through the outbox of the test
//! database (the service's relay sends them to NATS) or straight to JetStream.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Event, Family, Subjects, proto};
use notifier::stream::StreamConfig;
use reqwest::StatusCode;
use serde_json::Value;
use testkit::TestDb;
use uuid::Uuid;
use web::config::CommonConfig;

const WAIT: Duration = Duration::from_secs(15);

/// The notifier in-process on a port of its own, with its database and NATS namespace.
struct Svc {
    db: TestDb,
    subjects: Subjects,
    url: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    run: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

async fn start(stream: StreamConfig) -> Svc {
    let db = TestDb::new().await;
    let ns = testkit::namespace();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = notifier::Config {
        common: CommonConfig::for_tests(
            "notifier",
            &db.url,
            &testkit::nats_url(),
            &ns,
            testkit::JWT_SECRET,
        ),
        push: notifier::push::PushConfig::default(),
        stream,
    };
    let app = notifier::Application::build_with_listener(config, listener)
        .await
        .expect("notifier starts");
    let url = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    Svc {
        db,
        subjects: Subjects::new(ns),
        url,
        http: reqwest::Client::new(),
        stop: Some(tx),
        run: Some(run),
    }
}

fn quick() -> StreamConfig {
    StreamConfig {
        heartbeat: Duration::from_secs(3600),
        ..Default::default()
    }
}

impl Svc {
    async fn user(&self, name: &str) -> Uuid {
        testkit::profile(
            &self.db,
            &format!("{name}_{}", Uuid::new_v4().simple()),
            false,
            None,
        )
        .await
    }

    /// Writes the event into the outbox, as the services that own it do.
    async fn publish(&self, event: &Event) {
        let mut conn = self.db.conn().await;
        bus::outbox::enqueue(&mut conn, &self.subjects, event)
            .await
            .unwrap();
    }

    async fn get(&self, auth: Option<&str>, last_event_id: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}/v1/events", self.url));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(l) = last_event_id {
            req = req.header("last-event-id", l);
        }
        req.send().await.unwrap()
    }

    async fn open(&self, user: Uuid, last_event_id: Option<&str>) -> Sse {
        let res = self
            .get(
                Some(&format!("Bearer {}", testkit::token_for(user))),
                last_event_id,
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        Sse::read(res)
    }

    /// A live session of `host` with `participants` active.
    async fn session(&self, host: Uuid, participants: &[Uuid]) -> Uuid {
        let id = Uuid::new_v4();
        let sql = self.db.sql().await;
        sql.execute(
            "INSERT INTO live_sessions (id, creator_id, session_type, title, access_type, status, room_name)
             VALUES ($1, $2, 'video_live', 'test', 'public', 'live', $3)",
            &[&id, &host, &format!("room-{id}")],
        )
        .await
        .unwrap();
        for p in participants {
            sql.execute(
                "INSERT INTO live_participants (id, session_id, user_id, role, is_active, joined_at)
                 VALUES ($1, $2, $3, 'viewer', true, now())",
                &[&Uuid::new_v4(), &id, p],
            )
            .await
            .unwrap();
        }
        id
    }
}

fn call(name: &str, caller: Uuid, callee: Uuid) -> Event {
    let id = Uuid::new_v4();
    let payload = proto::CallChanged {
        call_id: id.to_string(),
        caller_id: caller.to_string(),
        callee_id: callee.to_string(),
        call_type: "video".into(),
        status: name.into(),
        room_name: format!("call-{id}"),
        ..Default::default()
    };
    Event::new(Family::Call, name, id, &payload)
}

fn message(session: Uuid, author: Uuid, body: &str) -> Event {
    let payload = proto::MessagePosted {
        session_id: session.to_string(),
        message_id: Uuid::new_v4().to_string(),
        user_id: author.to_string(),
        body: body.into(),
        deleted: false,
    };
    Event::new(Family::Session, "message_posted", session, &payload)
}

fn participant(name: &str, session: Uuid, user: Uuid) -> Event {
    let payload = proto::SessionParticipantChanged {
        session_id: session.to_string(),
        user_id: user.to_string(),
        role: "viewer".into(),
        active: name == "participant_joined",
        viewer_count: 1,
    };
    Event::new(Family::Session, name, session, &payload)
}

#[derive(Debug, Clone, Default)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: Option<Value>,
    comment: Option<String>,
    retry: Option<String>,
}

/// A client reading one stream in the background.
struct Sse {
    frames: Arc<Mutex<Vec<Frame>>>,
    ended: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sse {
    fn read(mut res: reqwest::Response) -> Sse {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(AtomicBool::new(false));
        let (f, e) = (frames.clone(), ended.clone());
        let task = tokio::spawn(async move {
            let mut buf = String::new();
            while let Ok(Some(chunk)) = res.chunk().await {
                buf.push_str(std::str::from_utf8(&chunk).unwrap());
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    f.lock().unwrap().push(parse(&block));
                }
            }
            e.store(true, Ordering::SeqCst);
        });
        Sse {
            frames,
            ended,
            task,
        }
    }

    fn all(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    /// The events (not comments, not the retry line).
    fn events(&self) -> Vec<Frame> {
        self.all()
            .into_iter()
            .filter(|f| f.event.is_some())
            .collect()
    }

    fn ids(&self) -> Vec<String> {
        self.events().into_iter().filter_map(|f| f.id).collect()
    }

    async fn wait_for(&self, ev: &Event) -> Frame {
        let id = ev.id.to_string();
        testkit::eventually(WAIT, &format!("event {} ({id})", ev.event_type), || {
            let found = self
                .events()
                .into_iter()
                .find(|f| f.id.as_deref() == Some(&id));
            async move { found }
        })
        .await
    }

    async fn wait_ended(&self) {
        testkit::eventually(WAIT, "the stream to end", || {
            let ended = self.ended.load(Ordering::SeqCst).then_some(());
            async move { ended }
        })
        .await
    }

    fn has(&self, ev: &Event) -> bool {
        self.ids().contains(&ev.id.to_string())
    }

    fn close(self) {
        self.task.abort();
    }
}

fn parse(block: &str) -> Frame {
    let mut f = Frame::default();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            f.id = Some(v.into());
        } else if let Some(v) = line.strip_prefix("event: ") {
            f.event = Some(v.into());
        } else if let Some(v) = line.strip_prefix("data: ") {
            f.data = Some(serde_json::from_str(v).expect("data is one line of JSON"));
        } else if let Some(v) = line.strip_prefix("retry: ") {
            f.retry = Some(v.into());
        } else if let Some(v) = line.strip_prefix(": ") {
            f.comment = Some(v.into());
        } else if !line.is_empty() {
            panic!("unexpected SSE line {line:?}");
        }
    }
    f
}

async fn assert_401(res: reqwest::Response) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["errorCode"], "UNAUTHORIZED");
}

#[tokio::test]
async fn without_a_valid_token_or_profile_the_answer_is_401() {
    let svc = start(quick()).await;
    assert_401(svc.get(None, None).await).await;
    assert_401(svc.get(Some("Bearer not-a-jwt"), None).await).await;
    assert_401(svc.get(Some("Basic dXNlcjpwYXNz"), None).await).await;
    let wrong_key = auth::mint(
        b"another-secret-with-enough-bytes-32!",
        Uuid::new_v4(),
        3600,
    );
    assert_401(svc.get(Some(&format!("Bearer {wrong_key}")), None).await).await;
    // A valid token naming no profile.
    let nobody = testkit::token_for(Uuid::new_v4());
    assert_401(svc.get(Some(&format!("Bearer {nobody}")), None).await).await;
}

#[tokio::test]
async fn the_stream_starts_with_retry_and_heartbeats_arrive() {
    let svc = start(StreamConfig {
        heartbeat: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let u = svc.user("hb").await;
    let res = svc
        .get(Some(&format!("Bearer {}", testkit::token_for(u))), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let sse = Sse::read(res);
    testkit::eventually(WAIT, "two heartbeats", || {
        let n = sse
            .all()
            .iter()
            .filter(|f| f.comment.as_deref() == Some("hb"))
            .count();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    let first = sse.all()[0].clone();
    assert_eq!(first.retry.as_deref(), Some("3000"));
    assert!(sse.events().is_empty());
}

#[tokio::test]
async fn a_call_event_reaches_both_parties_and_no_stranger() {
    let svc = start(quick()).await;
    let (a, b, stranger) = (
        svc.user("a").await,
        svc.user("b").await,
        svc.user("s").await,
    );
    let (sa, sb, ss) = (
        svc.open(a, None).await,
        svc.open(b, None).await,
        svc.open(stranger, None).await,
    );
    let ringing = call("ringing", a, b);
    svc.publish(&ringing).await;
    let got = sa.wait_for(&ringing).await;
    assert_eq!(got.event.as_deref(), Some("call.ringing"));
    let data = got.data.unwrap();
    assert_eq!(data["type"], "call.ringing");
    assert_eq!(data["id"], ringing.id.to_string());
    assert_eq!(data["callId"], ringing.aggregate_id);
    assert_eq!(data["callerId"], a.to_string());
    assert_eq!(data["calleeId"], b.to_string());
    assert_eq!(data["status"], "ringing");
    assert_eq!(data["previousStatus"], Value::Null);
    assert!(data["occurredAt"].is_string());
    sb.wait_for(&ringing).await;
    // A call of the stranger's own, published after: once it is there, the first one
    // would have been too.
    let own = call("initiated", stranger, a);
    svc.publish(&own).await;
    ss.wait_for(&own).await;
    assert_eq!(ss.ids(), vec![own.id.to_string()]);
}

#[tokio::test]
async fn session_events_follow_who_is_in_the_session() {
    let svc = start(quick()).await;
    let (host, p1, late, guest, stranger) = (
        svc.user("host").await,
        svc.user("p1").await,
        svc.user("late").await,
        svc.user("guest").await,
        svc.user("stranger").await,
    );
    let session = svc.session(host, &[p1]).await;
    let (sh, s1, sl, sg, ss) = (
        svc.open(host, None).await,
        svc.open(p1, None).await,
        svc.open(late, None).await,
        svc.open(guest, None).await,
        svc.open(stranger, None).await,
    );
    let m1 = message(session, p1, "first");
    svc.publish(&m1).await;
    let got = s1.wait_for(&m1).await;
    assert_eq!(got.data.as_ref().unwrap()["body"], "first");
    assert_eq!(got.data.as_ref().unwrap()["sessionId"], session.to_string());
    sh.wait_for(&m1).await;

    let joined = participant("participant_joined", session, late);
    let m2 = message(session, host, "second");
    svc.publish(&joined).await;
    svc.publish(&m2).await;
    for s in [&sh, &s1, &sl] {
        s.wait_for(&joined).await;
        s.wait_for(&m2).await;
    }
    assert_eq!(
        sl.ids(),
        vec![joined.id.to_string(), m2.id.to_string()],
        "the late joiner has nothing from before"
    );

    let left = participant("participant_left", session, p1);
    let invited = Event::new(
        Family::Session,
        "guest_invited",
        session,
        &proto::GuestChanged {
            session_id: session.to_string(),
            request_id: Uuid::new_v4().to_string(),
            user_id: guest.to_string(),
            kind: "invitation".into(),
            status: "pending".into(),
            role: "speaker".into(),
        },
    );
    let paused = Event::new(
        Family::Session,
        "paused",
        session,
        &proto::SessionChanged {
            session_id: session.to_string(),
            creator_id: host.to_string(),
            status: "paused".into(),
            previous_status: "live".into(),
            ..Default::default()
        },
    );
    let m3 = message(session, host, "third");
    for e in [&left, &invited, &paused, &m3] {
        svc.publish(e).await;
    }
    s1.wait_for(&left).await;
    for s in [&sh, &sl] {
        s.wait_for(&left).await;
        s.wait_for(&paused).await;
        s.wait_for(&m3).await;
    }
    let g = sg.wait_for(&invited).await;
    assert_eq!(g.data.unwrap()["kind"], "invitation");
    let p = sh.wait_for(&invited).await;
    assert_eq!(p.event.as_deref(), Some("session.guest_invited"));
    assert_eq!(sh.wait_for(&paused).await.data.unwrap()["status"], "paused");

    // Barrier: an event for p1, the guest and the stranger, published last.
    let barrier = call("initiated", p1, stranger);
    let barrier2 = call("initiated", guest, stranger);
    svc.publish(&barrier).await;
    svc.publish(&barrier2).await;
    s1.wait_for(&barrier).await;
    sg.wait_for(&barrier2).await;
    ss.wait_for(&barrier2).await;
    assert!(
        !s1.has(&m3) && !s1.has(&paused) && !s1.has(&invited),
        "the leaver stopped getting the session's events"
    );
    assert_eq!(
        sg.ids(),
        vec![invited.id.to_string(), barrier2.id.to_string()]
    );
    assert_eq!(
        ss.ids(),
        vec![barrier.id.to_string(), barrier2.id.to_string()]
    );
    assert!(
        !sl.has(&invited),
        "a guest event goes to the guest and the host only"
    );
}

#[tokio::test]
async fn last_event_id_replays_what_was_missed_once_and_in_order() {
    let svc = start(quick()).await;
    let (u, peer) = (svc.user("u").await, svc.user("peer").await);
    let first = svc.open(u, None).await;
    let sp = svc.open(peer, None).await;
    let e1 = call("initiated", u, peer);
    svc.publish(&e1).await;
    first.wait_for(&e1).await;
    first.close();
    // While u is away; the peer sees each, so the hub has handled them.
    let missed: Vec<Event> = ["ringing", "accepted", "live"]
        .iter()
        .map(|n| call(n, u, peer))
        .collect();
    for e in &missed {
        svc.publish(e).await;
        sp.wait_for(e).await;
    }
    let back = svc.open(u, Some(&e1.id.to_string())).await;
    let live = call("ended", u, peer);
    for e in &missed {
        back.wait_for(e).await;
    }
    svc.publish(&live).await;
    back.wait_for(&live).await;
    let expected: Vec<String> = missed
        .iter()
        .chain([&live])
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(
        back.ids(),
        expected,
        "replay in order, then live, nothing twice"
    );
    assert!(
        back.events()
            .iter()
            .all(|f| f.event.as_deref() != Some("resync"))
    );

    // The newest id: nothing to replay, no resync.
    let current = svc.open(u, Some(&live.id.to_string())).await;
    let next = call("missed", u, peer);
    svc.publish(&next).await;
    current.wait_for(&next).await;
    assert_eq!(current.ids(), vec![next.id.to_string()]);

    // Unknown ids (never seen, not a UUID): resync first.
    for bad in [Uuid::new_v4().to_string(), "not-an-id".to_owned()] {
        let s = svc.open(u, Some(&bad)).await;
        let f = testkit::eventually(WAIT, "resync", || {
            let f = s.events().first().cloned();
            async move { f }
        })
        .await;
        assert_eq!(f.event.as_deref(), Some("resync"));
        assert_eq!(f.id, None);
        assert_eq!(f.data.unwrap()["type"], "resync");
        s.close();
    }
}

#[tokio::test]
async fn a_user_over_the_connection_limit_loses_the_oldest() {
    let svc = start(StreamConfig {
        max_connections_per_user: 2,
        ..quick()
    })
    .await;
    let (u, peer) = (svc.user("u").await, svc.user("peer").await);
    let oldest = svc.open(u, None).await;
    let second = svc.open(u, None).await;
    let third = svc.open(u, None).await;
    oldest.wait_ended().await;
    let e = call("initiated", peer, u);
    svc.publish(&e).await;
    second.wait_for(&e).await;
    third.wait_for(&e).await;
    assert!(!second.ended.load(Ordering::SeqCst));
}

#[tokio::test]
async fn streams_close_when_the_service_stops() {
    let mut svc = start(quick()).await;
    let u = svc.user("u").await;
    let s = svc.open(u, None).await;
    let s2 = svc.open(svc.user("v").await, None).await;
    testkit::eventually(WAIT, "the retry line", || {
        let n = s.all().len() + s2.all().len();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    svc.stop.take().unwrap().send(()).unwrap();
    s.wait_ended().await;
    s2.wait_ended().await;
    tokio::time::timeout(WAIT, svc.run.take().unwrap())
        .await
        .expect("the service stops without waiting for its streams")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn undecodable_messages_on_nats_do_not_break_the_stream() {
    let svc = start(quick()).await;
    let (a, b) = (svc.user("a").await, svc.user("b").await);
    let s = svc.open(a, None).await;
    let (_client, js) = bus::connect(&testkit::nats_url()).await.unwrap();
    // Not an envelope at all.
    js.publish(
        svc.subjects.subject(Family::Call, "ringing"),
        vec![0xff, 0x01, 0x02].into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // An envelope whose payload is not the message its type names.
    let mut bad = call("ringing", a, b);
    bad.payload = vec![0xff, 0xff, 0xff];
    js.publish(bad.subject(&svc.subjects), bad.encode().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // An event type nobody streams.
    let odd = Event::new(
        Family::Session,
        "something_new",
        Uuid::new_v4(),
        &proto::SessionChanged::default(),
    );
    js.publish(odd.subject(&svc.subjects), odd.encode().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let good = call("ringing", a, b);
    svc.publish(&good).await;
    s.wait_for(&good).await;
    assert_eq!(s.ids(), vec![good.id.to_string()]);
}
