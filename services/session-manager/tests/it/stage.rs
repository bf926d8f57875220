//! The stage routes: invitations, requests, answers, the end of a guest's turn; every bad
//! input and forbidden actor; the limit under 50 concurrent approvals; expiry (also across a
//! restart); LiveKit refusing the permission change.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Options, Stack, assert_error, listener, sm_config, stack, stack_with};

/// A session-manager started by a test itself (its own TTL, or to be stopped and restarted).
pub struct Sm {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sm {
    pub async fn stop(mut self) {
        self.stop.take();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

/// Starts a session-manager on the stack's database, NATS namespace and sim, with `ttl` for
/// stage invitations, and points `stack.sessions` at it.
pub async fn start_sm(stack: &mut Stack, ttl: Duration) -> Sm {
    let mut config = sm_config(
        &stack.db,
        &stack.ns,
        stack.sim.base_url(),
        &Options::default(),
    );
    config.stage_ttl = ttl;
    let sm = session_manager::Application::build_with_listener(config, listener())
        .await
        .unwrap();
    stack.sessions = format!("http://127.0.0.1:{}", sm.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = sm
            .run_until_stopped(async move {
                let _ = rx.await;
            })
            .await;
    });
    Sm {
        stop: Some(tx),
        task,
    }
}

/// A stack whose session-manager gives invitations `ttl`.
pub async fn stack_with_ttl(ttl: Duration) -> (Stack, Sm) {
    let mut stack = stack_with(Options {
        session_manager: false,
        ..Options::default()
    })
    .await;
    let sm = start_sm(&mut stack, ttl).await;
    (stack, sm)
}

impl Stack {
    pub async fn post(&self, user: Uuid, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(Method::POST, format!("{}{path}", self.sessions), user, body)
            .await
    }

    /// A creator and its session of `session_type`, live.
    pub async fn host_live(&self, session_type: &str) -> (Uuid, Uuid) {
        let host = testkit::profile(&self.db, "host", true, None).await;
        (host, self.live_session(host, session_type).await)
    }

    /// A new user who joins the session's room through the sim: a current viewer once
    /// session-manager has seen LiveKit's report.
    pub async fn viewer(&self, session: Uuid, name: &str) -> Uuid {
        let user = testkit::profile(&self.db, name, false, None).await;
        self.join(&self.token(user, session).await).await;
        self.wait_active(session, user).await;
        user
    }

    pub async fn wait_active(&self, session: Uuid, user: Uuid) {
        testkit::eventually(
            Duration::from_secs(20),
            "the viewer to be present",
            || async { (self.role_of(session, user).await.1 == Some(true)).then_some(()) },
        )
        .await;
    }

    /// The user's role and presence in `live_participants`.
    pub async fn role_of(&self, session: Uuid, user: Uuid) -> (Option<String>, Option<bool>) {
        let row = self
            .sql()
            .await
            .query_opt(
                "SELECT role, is_active FROM live_participants WHERE session_id = $1 AND user_id = $2",
                &[&session, &user],
            )
            .await
            .unwrap();
        match row {
            Some(r) => (Some(r.get(0)), Some(r.get(1))),
            None => (None, None),
        }
    }

    pub async fn stage_status(&self, id: &str) -> String {
        let id: Uuid = id.parse().unwrap();
        self.sql()
            .await
            .query_one("SELECT status FROM stage_requests WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0)
    }

    /// The `session.guest_*` events of the session written so far, in order.
    pub async fn guest_events(&self, session: Uuid) -> Vec<(String, bus::proto::GuestChanged)> {
        let rows = self
            .sql()
            .await
            .query(
                "SELECT subject, payload FROM outbox WHERE subject LIKE '%session.guest_%' ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                let (subject, payload): (String, Vec<u8>) = (r.get(0), r.get(1));
                let ev = bus::Incoming::decode(&subject, &payload, 1).unwrap();
                assert_eq!(ev.aggregate_id, session.to_string());
                let name = ev.event_type.trim_start_matches("session.").to_owned();
                (name, ev.payload().unwrap())
            })
            .filter(|(_, g): &(String, bus::proto::GuestChanged)| {
                g.session_id == session.to_string()
            })
            .collect()
    }

    pub async fn guest_event_names(&self, session: Uuid) -> Vec<String> {
        self.guest_events(session)
            .await
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// The sim's `UpdateParticipant` calls for `identity`, as (canPublish, sources) of the
    /// permission sent.
    pub async fn sim_updates(&self, identity: Uuid) -> Vec<(bool, Vec<String>)> {
        let calls: Value = self
            .http
            .get(format!(
                "{}/sim/calls?method=UpdateParticipant",
                self.sim.base_url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        calls
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["identity"] == json!(identity.to_string()) && c["code"].is_null())
            .map(|c| {
                let p = &c["body"]["permission"];
                let sources = p["canPublishSources"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| s.as_str().unwrap_or_default().to_ascii_lowercase())
                            .collect()
                    })
                    .unwrap_or_default();
                (p["canPublish"] == json!(true), sources)
            })
            .collect()
    }
}

pub fn invite_path(s: Uuid) -> String {
    format!("/v1/sessions/{s}/guests/invite")
}
pub fn invitation_path(s: Uuid, i: &str) -> String {
    format!("/v1/sessions/{s}/guests/invitations/{i}/respond")
}
pub fn requests_path(s: Uuid) -> String {
    format!("/v1/sessions/{s}/guests/requests")
}
pub fn request_path(s: Uuid, r: &str) -> String {
    format!("/v1/sessions/{s}/guests/requests/{r}/respond")
}
pub fn end_path(s: Uuid, u: Uuid) -> String {
    format!("/v1/sessions/{s}/guests/{u}/end")
}

/// Invites `user` and returns the invitation's id.
async fn invite(stack: &Stack, host: Uuid, session: Uuid, user: Uuid) -> String {
    let (status, body) = stack
        .post(host, &invite_path(session), Some(json!({"userId": user})))
        .await;
    assert_eq!(status, 201, "{body}");
    body["invitation"]["id"].as_str().unwrap().to_owned()
}

/// `user` asks for the stage; returns the request's id.
async fn ask(stack: &Stack, user: Uuid, session: Uuid) -> String {
    let (status, body) = stack.post(user, &requests_path(session), None).await;
    assert_eq!(status, 201, "{body}");
    body["request"]["id"].as_str().unwrap().to_owned()
}

async fn answer_invitation(
    stack: &Stack,
    who: Uuid,
    session: Uuid,
    id: &str,
    accept: bool,
) -> (StatusCode, Value) {
    let path = invitation_path(session, id);
    stack
        .post(who, &path, Some(json!({ "accept": accept })))
        .await
}

async fn answer_request(
    stack: &Stack,
    who: Uuid,
    session: Uuid,
    id: &str,
    approve: bool,
) -> (StatusCode, Value) {
    let path = request_path(session, id);
    stack
        .post(who, &path, Some(json!({ "approve": approve })))
        .await
}

async fn assert_role(stack: &Stack, session: Uuid, user: Uuid, role: &str) {
    assert_eq!(stack.role_of(session, user).await.0.as_deref(), Some(role));
}

async fn stage_rows(stack: &Stack) -> i64 {
    stack
        .count("SELECT count(*) FROM stage_requests", &[])
        .await
}

#[tokio::test]
async fn invitations_bad_input_forbidden_actors_and_one_pending() {
    let stack = stack().await;
    let (host, session) = stack.host_live("video_live").await;
    let viewer = stack.viewer(session, "viewer").await;
    let other = stack.viewer(session, "other").await;
    let absent = testkit::profile(&stack.db, "absent", false, None).await;

    // Bad bodies and paths: 422, nothing stored.
    for bad in [
        json!([]),
        json!({}),
        json!({"userId": "nope"}),
        json!({"userId": 5}),
        json!({"userId": viewer, "extra": 1}),
    ] {
        let (status, body) = stack.post(host, &invite_path(session), Some(bad)).await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
    let (status, body) = stack
        .raw(
            Method::POST,
            format!("{}{}", stack.sessions, invite_path(session)),
            Some(format!("Bearer {}", testkit::token_for(host))),
            Some("application/json"),
            Some(b"{\"userId\":".to_vec()),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    let (status, body) = stack
        .post(
            host,
            "/v1/sessions/not-a-uuid/guests/invite",
            Some(json!({"userId": viewer})),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    let (status, body) = stack
        .raw(
            Method::POST,
            format!("{}{}", stack.sessions, invite_path(session)),
            None,
            Some("application/json"),
            Some(serde_json::to_vec(&json!({"userId": viewer})).unwrap()),
        )
        .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = stack
        .post(
            host,
            &invite_path(Uuid::now_v7()),
            Some(json!({"userId": viewer})),
        )
        .await;
    assert_error(status, &body, 404, "SESSION_NOT_FOUND");
    // Forbidden actor: a viewer inviting.
    let (status, body) = stack
        .post(
            viewer,
            &invite_path(session),
            Some(json!({"userId": other})),
        )
        .await;
    assert_error(status, &body, 403, "FORBIDDEN");
    // Not a current viewer; the host itself.
    let (status, body) = stack
        .post(host, &invite_path(session), Some(json!({"userId": absent})))
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = stack
        .post(host, &invite_path(session), Some(json!({"userId": host})))
        .await;
    assert_error(status, &body, 409, "CONFLICT");
    assert_eq!(stage_rows(&stack).await, 0);

    // The invitation, in API.md's shape.
    let (status, body) = stack
        .post(host, &invite_path(session), Some(json!({"userId": viewer})))
        .await;
    assert_eq!(status, 201, "{body}");
    let inv = &body["invitation"];
    assert_eq!(body["success"], json!(true));
    assert_eq!(inv["sessionId"], json!(session));
    assert_eq!(inv["userId"], json!(viewer));
    assert_eq!(inv["status"], json!("pending"));
    let created = chrono::DateTime::parse_from_rfc3339(inv["createdAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(inv["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 60);
    let id = inv["id"].as_str().unwrap().to_owned();

    // A second pending one for the same user (invitation or request): 409, the first stays.
    let (status, body) = stack
        .post(host, &invite_path(session), Some(json!({"userId": viewer})))
        .await;
    assert_error(status, &body, 409, "CONFLICT");
    let (status, body) = stack.post(viewer, &requests_path(session), None).await;
    assert_error(status, &body, 409, "CONFLICT");
    assert_eq!(stage_rows(&stack).await, 1);
    assert_eq!(stack.stage_status(&id).await, "pending");

    // Answering: bad bodies 422; anyone but the invitee 404 (an invitation is theirs only).
    for bad in [
        json!({}),
        json!({"accept": "yes"}),
        json!({"accept": true, "x": 1}),
        json!([]),
    ] {
        let (status, body) = stack
            .post(viewer, &invitation_path(session, &id), Some(bad))
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
    for stranger in [other, host, absent] {
        let (status, body) = answer_invitation(&stack, stranger, session, &id, true).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    let (status, body) = stack
        .post(
            viewer,
            &invitation_path(session, &Uuid::now_v7().to_string()),
            Some(json!({"accept": true})),
        )
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = answer_invitation(&stack, viewer, session, "not-a-uuid", true).await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    // The invitation under another session's path.
    let (status, body) = answer_invitation(&stack, viewer, Uuid::now_v7(), &id, true).await;
    assert_error(status, &body, 404, "SESSION_NOT_FOUND");
    assert_eq!(stack.stage_status(&id).await, "pending");
    assert_role(&stack, session, viewer, "viewer").await;

    // Declined; answering again is a refused transition.
    let (status, body) = answer_invitation(&stack, viewer, session, &id, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["invitation"]["status"], json!("declined"));
    let (status, body) = answer_invitation(&stack, viewer, session, &id, true).await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    assert_role(&stack, session, viewer, "viewer").await;

    let events = stack.guest_events(session).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["guest_invited", "guest_declined"]);
    assert_eq!(
        events[1].1,
        bus::proto::GuestChanged {
            session_id: session.to_string(),
            request_id: id.clone(),
            user_id: viewer.to_string(),
            kind: "invitation".into(),
            status: "declined".into(),
            role: "viewer".into(),
        }
    );
    // The expiry deadline was cancelled by the answer.
    let inv: Uuid = id.parse().unwrap();
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM deadlines WHERE subject_id = $1 AND cancelled_at IS NOT NULL",
                &[&inv]
            )
            .await,
        1
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn requests_are_answered_by_the_host_only_and_guests_end_their_turn() {
    let stack = stack().await;
    let (host, session) = stack.host_live("video_live").await;
    let guest = stack.viewer(session, "guest").await;
    let asker = stack.viewer(session, "asker").await;
    let other = stack.viewer(session, "other").await;
    let absent = testkit::profile(&stack.db, "absent", false, None).await;

    // Who may ask: a current viewer; not the host, not someone outside the room.
    let (status, body) = stack.post(host, &requests_path(session), None).await;
    assert_error(status, &body, 409, "CONFLICT");
    let (status, body) = stack.post(absent, &requests_path(session), None).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = stack
        .post(absent, &requests_path(Uuid::now_v7()), None)
        .await;
    assert_error(status, &body, 404, "SESSION_NOT_FOUND");
    let (status, body) = stack
        .post(absent, "/v1/sessions/x/guests/requests", None)
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert_eq!(stage_rows(&stack).await, 0);

    // A guest on stage (through an accepted invitation).
    let inv = invite(&stack, host, session, guest).await;
    let (status, body) = answer_invitation(&stack, guest, session, &inv, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["invitation"]["status"], json!("accepted"));
    assert_role(&stack, session, guest, "co_host").await;
    let (status, body) = stack.post(guest, &requests_path(session), None).await;
    assert_error(status, &body, 409, "CONFLICT");

    let req = ask(&stack, asker, session).await;
    let (status, body) = stack.post(asker, &requests_path(session), None).await;
    assert_error(status, &body, 409, "CONFLICT");
    // Forbidden actors: a guest, another viewer, the asker itself.
    for who in [guest, other, asker, absent] {
        let (status, body) = answer_request(&stack, who, session, &req, true).await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    for bad in [
        json!({}),
        json!({"approve": 1}),
        json!({"accept": true}),
        json!("x"),
    ] {
        let (status, body) = stack
            .post(host, &request_path(session, &req), Some(bad))
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
    // An invitation's id is no request.
    let (status, body) = answer_request(&stack, host, session, &inv, true).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    assert_eq!(stack.stage_status(&req).await, "pending");

    let (status, body) = answer_request(&stack, host, session, &req, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request"]["status"], json!("declined"));
    let (status, body) = answer_request(&stack, host, session, &req, true).await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    assert_role(&stack, session, asker, "viewer").await;

    let req = ask(&stack, asker, session).await;
    let (status, body) = answer_request(&stack, host, session, &req, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request"]["status"], json!("accepted"));
    assert_role(&stack, session, asker, "co_host").await;

    // Ending a turn: the host or the guest; nobody else; only someone on stage.
    for (who, target, code, error) in [
        (other, guest, 403, "FORBIDDEN"),
        (asker, guest, 403, "FORBIDDEN"),
        (host, other, 409, "INVALID_TRANSITION"),
        (other, other, 409, "INVALID_TRANSITION"),
        (host, absent, 404, "NOT_FOUND"),
    ] {
        let (status, body) = stack.post(who, &end_path(session, target), None).await;
        assert_error(status, &body, code, error);
    }
    let (status, body) = stack
        .post(
            host,
            &format!("/v1/sessions/{session}/guests/nope/end"),
            None,
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    let (status, body) = stack.post(guest, &end_path(session, guest), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["guest"],
        json!({"sessionId": session, "userId": guest, "role": "viewer"})
    );
    let (status, body) = stack.post(host, &end_path(session, asker), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = stack.post(host, &end_path(session, asker), None).await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    assert_role(&stack, session, guest, "viewer").await;
    assert_role(&stack, session, asker, "viewer").await;

    let events = stack.guest_events(session).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "guest_invited",
            "guest_accepted",
            "guest_requested",
            "guest_rejected",
            "guest_requested",
            "guest_approved",
            "guest_ended",
            "guest_ended"
        ]
    );
    let approved = &events[5].1;
    assert_eq!(
        (
            approved.kind.as_str(),
            approved.status.as_str(),
            approved.role.as_str()
        ),
        ("request", "accepted", "co_host")
    );
    let ended = &events[6].1;
    assert_eq!(
        ended,
        &bus::proto::GuestChanged {
            session_id: session.to_string(),
            request_id: inv.clone(),
            user_id: guest.to_string(),
            kind: "turn".into(),
            status: "ended".into(),
            role: "viewer".into(),
        }
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_full_stage_is_409_and_the_request_stays_pending() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let (status, body) = stack
        .create_session(
            host,
            json!({"sessionType": "audio_room", "title": "Small stage", "accessType": "public", "maxGuests": 1}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let session: Uuid = body["session"]["id"].as_str().unwrap().parse().unwrap();
    stack.join(&stack.token(host, session).await).await;
    stack
        .wait_session(host, session, "live", |s| s["status"] == json!("live"))
        .await;
    let a = stack.viewer(session, "a").await;
    let b = stack.viewer(session, "b").await;
    let c = stack.viewer(session, "c").await;
    let ra = ask(&stack, a, session).await;
    let rb = ask(&stack, b, session).await;
    let (status, body) = answer_request(&stack, host, session, &ra, true).await;
    assert_eq!(status, 200, "{body}");
    assert_role(&stack, session, a, "speaker").await;
    let (status, body) = answer_request(&stack, host, session, &rb, true).await;
    assert_error(status, &body, 409, "CONFLICT");
    assert_eq!(stack.stage_status(&rb).await, "pending");
    let (status, body) = stack
        .post(host, &invite_path(session), Some(json!({"userId": c})))
        .await;
    assert_error(status, &body, 409, "CONFLICT");
    // A seat frees: the pending request can be approved now.
    let (status, _) = stack.post(a, &end_path(session, a), None).await;
    assert_eq!(status, 200);
    let (status, body) = answer_request(&stack, host, session, &rb, true).await;
    assert_eq!(status, 200, "{body}");
    assert_role(&stack, session, b, "speaker").await;
    stack.shutdown().await;
}

/// 50 viewers ask for the stage of a host whose limit is 3; the host approves all of them at
/// once: exactly 3 go on stage, in the database and in LiveKit.
#[tokio::test]
async fn fifty_concurrent_approvals_promote_exactly_the_limit() {
    let stack = stack().await;
    let (host, session) = stack.host_live("video_live").await;
    let mut viewers = Vec::new();
    for i in 0..50 {
        viewers.push(testkit::profile(&stack.db, &format!("v{i}"), false, None).await);
    }
    let tokens =
        futures_util::future::join_all(viewers.iter().map(|v| stack.token(*v, session))).await;
    futures_util::future::join_all(tokens.iter().map(|t| stack.join(t))).await;
    stack
        .wait_session(host, session, "50 viewers", |s| {
            s["viewerCount"] == json!(50)
        })
        .await;
    let requests =
        futures_util::future::join_all(viewers.iter().map(|v| ask(&stack, *v, session))).await;
    let paths: Vec<String> = requests.iter().map(|r| request_path(session, r)).collect();
    let answers = futures_util::future::join_all(
        paths
            .iter()
            .map(|p| stack.post(host, p, Some(json!({"approve": true})))),
    )
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_error(*status, body, 409, "CONFLICT");
    }
    assert_eq!(ok, 3, "exactly the limit is promoted");
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM live_participants WHERE session_id = $1 AND role = 'co_host'",
                &[&session]
            )
            .await,
        3
    );
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM stage_requests WHERE session_id = $1 AND status = 'accepted'",
                &[&session]
            )
            .await,
        3
    );
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM stage_requests WHERE session_id = $1 AND status = 'pending'",
                &[&session]
            )
            .await,
        47
    );
    let mut granted = 0;
    for v in &viewers {
        let updates = stack.sim_updates(*v).await;
        assert!(updates.len() <= 1, "{updates:?}");
        granted += updates.iter().filter(|(publish, _)| *publish).count();
    }
    assert_eq!(granted, 3, "LiveKit granted publishing to exactly 3");
    let approved = stack
        .guest_event_names(session)
        .await
        .into_iter()
        .filter(|n| n == "guest_approved")
        .count();
    assert_eq!(approved, 3);
    stack.shutdown().await;
}

#[tokio::test]
async fn invitations_expire_once_even_across_a_restart() {
    let (mut stack, sm) = stack_with_ttl(Duration::from_secs(1)).await;
    let (host, session) = stack.host_live("video_live").await;
    let viewer = stack.viewer(session, "viewer").await;
    let asker = stack.viewer(session, "asker").await;

    let inv = invite(&stack, host, session, viewer).await;
    testkit::eventually(
        Duration::from_secs(10),
        "the invitation to expire",
        || async { (stack.stage_status(&inv).await == "expired").then_some(()) },
    )
    .await;
    let (status, body) = answer_invitation(&stack, viewer, session, &inv, true).await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    assert_role(&stack, session, viewer, "viewer").await;

    // A request pending while session-manager is down expires once it is back.
    let req = ask(&stack, asker, session).await;
    sm.stop().await;
    let expires: chrono::DateTime<chrono::Utc> = stack
        .sql()
        .await
        .query_one(
            "SELECT expires_at FROM stage_requests WHERE id = $1",
            &[&req.parse::<Uuid>().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    while chrono::Utc::now() <= expires {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stack.stage_status(&req).await, "pending");
    let sm = start_sm(&mut stack, Duration::from_secs(1)).await;
    testkit::eventually(Duration::from_secs(10), "the request to expire", || async {
        (stack.stage_status(&req).await == "expired").then_some(())
    })
    .await;
    let (status, body) = answer_request(&stack, host, session, &req, true).await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");

    let events = stack.guest_events(session).await;
    let expired: Vec<&bus::proto::GuestChanged> = events
        .iter()
        .filter(|(n, _)| n == "guest_expired")
        .map(|(_, g)| g)
        .collect();
    assert_eq!(expired.len(), 2, "{events:?}");
    assert_eq!(expired[0].request_id, inv);
    assert_eq!(
        (expired[0].kind.as_str(), expired[0].status.as_str()),
        ("invitation", "expired")
    );
    assert_eq!(expired[1].request_id, req);
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM deadlines WHERE kind = 'stage.expire' AND fired_at IS NOT NULL AND outcome = 'expired'",
                &[]
            )
            .await,
        2
    );
    sm.stop().await;
    stack.shutdown().await;
}

/// LiveKit refusing the permission change: the host hears a clear 503, the request stays
/// pending and the role unchanged; a passing glitch is retried away.
#[tokio::test]
async fn livekit_failures_change_nothing_and_glitches_are_retried() {
    let stack = stack().await;
    let (host, session) = stack.host_live("video_live").await;
    let viewer = stack.viewer(session, "viewer").await;
    let req = ask(&stack, viewer, session).await;

    stack
        .faults(json!({"failNextApiCalls": 20, "code": "unavailable"}))
        .await;
    let res = stack
        .http
        .post(format!("{}{}", stack.sessions, request_path(session, &req)))
        .bearer_auth(testkit::token_for(host))
        .json(&json!({"approve": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers().get("retry-after").unwrap(), "1");
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_error(status, &body, 503, "INTERNAL_ERROR");
    assert_eq!(stack.stage_status(&req).await, "pending");
    assert_role(&stack, session, viewer, "viewer").await;
    assert!(stack.sim_updates(viewer).await.is_empty());
    assert_eq!(stack.guest_event_names(session).await, ["guest_requested"]);

    // One failed call: the retry gets through.
    stack
        .http
        .post(format!("{}/sim/reset", stack.sim.base_url()))
        .send()
        .await
        .unwrap();
    stack
        .faults(json!({"failNextApiCalls": 1, "code": "unavailable"}))
        .await;
    let (status, body) = answer_request(&stack, host, session, &req, true).await;
    assert_eq!(status, 200, "{body}");
    assert_role(&stack, session, viewer, "co_host").await;

    // Demotion refused by LiveKit: the role stays what the room gives.
    stack
        .faults(json!({"failNextApiCalls": 20, "code": "unavailable"}))
        .await;
    let (status, body) = stack.post(host, &end_path(session, viewer), None).await;
    assert_error(status, &body, 503, "INTERNAL_ERROR");
    assert_role(&stack, session, viewer, "co_host").await;
    stack
        .http
        .post(format!("{}/sim/reset", stack.sim.base_url()))
        .send()
        .await
        .unwrap();
    let (status, body) = stack.post(host, &end_path(session, viewer), None).await;
    assert_eq!(status, 200, "{body}");
    stack.shutdown().await;
}

#[tokio::test]
async fn leaving_the_room_ends_the_turn_and_the_end_of_the_session_cancels_what_is_pending() {
    let stack = stack().await;
    let (host, session) = stack.host_live("video_live").await;
    let room = format!("live_video_{session}");
    let guest = stack.viewer(session, "guest").await;
    let waiting = stack.viewer(session, "waiting").await;
    let req = ask(&stack, guest, session).await;
    let (status, _) = answer_request(&stack, host, session, &req, true).await;
    assert_eq!(status, 200);
    assert_role(&stack, session, guest, "co_host").await;

    stack.sim("leave", &room, guest).await;
    testkit::eventually(Duration::from_secs(20), "the guest off stage", || async {
        (stack.role_of(session, guest).await == (Some("viewer".into()), Some(false))).then_some(())
    })
    .await;
    let names = stack.guest_event_names(session).await;
    assert_eq!(
        names.last().map(String::as_str),
        Some("guest_ended"),
        "{names:?}"
    );

    let inv = invite(&stack, host, session, waiting).await;
    let (status, _) = stack
        .post(host, &format!("/v1/sessions/{session}/end"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(stack.stage_status(&inv).await, "cancelled");
    let (status, body) = answer_invitation(&stack, waiting, session, &inv, true).await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    let events = stack.guest_events(session).await;
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "guest_expired");
    assert_eq!(
        (last.request_id.as_str(), last.status.as_str()),
        (inv.as_str(), "cancelled")
    );
    // Nothing can start on the stage of an ended session.
    let (status, body) = stack
        .post(
            host,
            &invite_path(session),
            Some(json!({"userId": waiting})),
        )
        .await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    stack.shutdown().await;
}

/// An answer that comes after the invitation's time but before its deadline fired: expired
/// on the spot (409), once; the deadline then has nothing left to do.
#[tokio::test]
async fn an_answer_after_the_time_expires_it_on_the_spot() {
    let stack = stack().await;
    let (host, session) = stack.host_live("video_live").await;
    let viewer = stack.viewer(session, "viewer").await;
    let inv = invite(&stack, host, session, viewer).await;
    // The deadline is a minute away; the invitation's own time is over.
    let id: Uuid = inv.parse().unwrap();
    stack
        .sql()
        .await
        .execute(
            "UPDATE stage_requests SET created_at = now() - interval '2 minutes', \
             expires_at = now() - interval '1 minute' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (status, body) = answer_invitation(&stack, viewer, session, &inv, true).await;
    assert_error(status, &body, 409, "INVALID_TRANSITION");
    assert_eq!(stack.stage_status(&inv).await, "expired");
    assert_role(&stack, session, viewer, "viewer").await;
    assert!(stack.sim_updates(viewer).await.is_empty());
    assert_eq!(
        stack.guest_event_names(session).await,
        ["guest_invited", "guest_expired"]
    );
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM deadlines WHERE subject_id = $1 AND cancelled_at IS NOT NULL",
                &[&id]
            )
            .await,
        1
    );
    stack.shutdown().await;
}
