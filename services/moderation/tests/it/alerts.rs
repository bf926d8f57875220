//! The alert checks against a local webhook receiver: one message on entry, one on
//! escalation, one on resolution, in the one shape Slack and Discord both take.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web as aw};
use serde_json::Value;
use uuid::Uuid;

use crate::support::{self, Options};

/// A local Slack/Discord stand-in: records every JSON body; the first `fail_first` answers
/// are 500 (a target that is down for a while).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
    _server: actix_web::dev::ServerHandle,
}

async fn receiver(fail_first: usize) -> Receiver {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let attempts = Arc::new(Mutex::new(0usize));
    let listener = support::listener();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let data = (got.clone(), attempts);
    let server = HttpServer::new(move || {
        let (got, attempts) = data.clone();
        App::new().route(
            "/hook",
            aw::post().to(move |body: aw::Json<Value>| {
                let (got, attempts) = (got.clone(), attempts.clone());
                async move {
                    let mut n = attempts.lock().unwrap();
                    *n += 1;
                    if *n <= fail_first {
                        return HttpResponse::InternalServerError().finish();
                    }
                    got.lock().unwrap().push(body.into_inner());
                    HttpResponse::Ok().body("ok")
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Receiver {
        url,
        got,
        _server: handle,
    }
}

impl Receiver {
    fn messages(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
}

/// What Slack's incoming webhooks and Discord's webhooks accept.
fn assert_slack_and_discord_shape(m: &Value) {
    let text = m["text"].as_str().expect("Slack's text");
    assert!(!text.is_empty() && text.chars().count() <= 2000, "{m}");
    let content = m["content"].as_str().expect("Discord's content");
    assert!(
        !content.is_empty() && content.chars().count() <= 2000,
        "{m}"
    );
    let embeds = m["embeds"].as_array().expect("Discord's embeds");
    assert!(!embeds.is_empty() && embeds.len() <= 10, "{m}");
    for e in embeds {
        let title = e["title"].as_str().unwrap();
        assert!(!title.is_empty() && title.chars().count() <= 256);
        assert!(e["description"].as_str().unwrap().chars().count() <= 4096);
        let colour = e["color"].as_u64().expect("an integer colour");
        assert!(colour <= 0xFF_FF_FF);
        let fields = e["fields"].as_array().unwrap();
        assert!(fields.len() <= 25);
        for f in fields {
            let (n, v) = (f["name"].as_str().unwrap(), f["value"].as_str().unwrap());
            assert!(!n.is_empty() && n.chars().count() <= 256);
            assert!(!v.is_empty() && v.chars().count() <= 1024);
            assert!(f["inline"].is_boolean());
        }
    }
    assert!(["warning", "critical", "resolved"].contains(&m["severity"].as_str().unwrap()));
    assert!(m["alert"].is_string());
}

/// `n` connections of ten minutes that ended just now, in a session room.
async fn ten_minute_connections(stack: &support::Stack, n: usize) {
    for _ in 0..n {
        stack
            .sql()
            .await
            .execute(
                "INSERT INTO livekit_participations (participant_sid, room_name, identity, joined_at, left_at)
                 VALUES ($1, $2, $3, now() - interval '10 minutes', now())",
                &[
                    &format!("PA_{}", Uuid::new_v4().simple()),
                    &format!("live_video_{}", Uuid::now_v7()),
                    &Uuid::new_v4().to_string(),
                ],
            )
            .await
            .unwrap();
    }
}

async fn checks_run(stack: &support::Stack) -> i64 {
    stack
        .count(
            "SELECT count(*) FROM deadlines WHERE kind = 'moderation.alert_check' AND fired_at IS NOT NULL",
            &[],
        )
        .await
}

/// Waits until `n` more checks have run (so "no further message" means something).
async fn more_checks(stack: &support::Stack, n: i64) {
    let from = checks_run(stack).await;
    testkit::eventually(Duration::from_secs(20), "more alert checks", || async {
        (checks_run(stack).await >= from + n).then_some(())
    })
    .await;
}

async fn wait_messages(r: &Receiver, n: usize) -> Vec<Value> {
    testkit::eventually(Duration::from_secs(20), "the alert messages", || async {
        let m = r.messages();
        (m.len() >= n).then_some(m)
    })
    .await
}

fn options(url: String) -> Options {
    Options {
        moderation: Arc::new(move |c: &mut moderation::Config| {
            c.alerts.webhook_url = Some(url.clone());
            c.alerts.check_interval = Duration::from_millis(100);
            c.quota_participant_minutes = 100;
        }),
        ..Options::default()
    }
}

#[tokio::test]
async fn usage_alerts_fire_once_at_75_and_90_percent_and_resolve_once() {
    let r = receiver(0).await;
    let stack = support::stack_with(options(r.url.clone())).await;
    more_checks(&stack, 2).await;
    assert!(
        r.messages().is_empty(),
        "nothing to say: {:?}",
        r.messages()
    );

    // 80 of 100 minutes: warning.
    ten_minute_connections(&stack, 8).await;
    let m = wait_messages(&r, 1).await;
    more_checks(&stack, 3).await;
    assert_eq!(
        r.messages().len(),
        1,
        "one warning, not one per check: {m:?}"
    );
    assert_eq!(m[0]["severity"], "warning");
    assert_eq!(m[0]["alert"], "quota_participant_minutes");
    assert!(m[0]["text"].as_str().unwrap().contains("80%"), "{}", m[0]);

    // 100 of 100: critical.
    ten_minute_connections(&stack, 2).await;
    let m = wait_messages(&r, 2).await;
    more_checks(&stack, 3).await;
    assert_eq!(r.messages().len(), 2);
    assert_eq!(m[1]["severity"], "critical");
    assert_eq!(m[1]["alert"], "quota_participant_minutes");

    // Back to nothing: resolved.
    stack
        .sql()
        .await
        .execute("DELETE FROM livekit_participations", &[])
        .await
        .unwrap();
    let m = wait_messages(&r, 3).await;
    more_checks(&stack, 3).await;
    assert_eq!(r.messages().len(), 3, "{:?}", r.messages());
    assert_eq!(m[2]["severity"], "resolved");
    assert_eq!(m[2]["alert"], "quota_participant_minutes");
    for msg in &m {
        assert_slack_and_discord_shape(msg);
    }
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM alert_states WHERE name = 'quota_participant_minutes' AND severity = 'ok'",
                &[]
            )
            .await,
        1
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_target_that_is_down_gets_the_alert_once_it_is_back_and_only_once() {
    let r = receiver(2).await;
    let stack = support::stack_with(options(r.url.clone())).await;
    // 11 pending reports: over the limit of 10.
    let reporter = stack.user("reporter", false, None).await;
    let reported = stack.user("reported", false, None).await;
    for _ in 0..11 {
        stack
            .sql()
            .await
            .execute(
                "INSERT INTO live_reports (id, reporter_id, reported_user_id, reason) VALUES ($1, $2, $3, 'spam')",
                &[&Uuid::now_v7(), &reporter, &reported],
            )
            .await
            .unwrap();
    }
    let m = wait_messages(&r, 1).await;
    more_checks(&stack, 3).await;
    assert_eq!(r.messages().len(), 1, "{:?}", r.messages());
    assert_eq!(m[0]["alert"], "pending_reports");
    assert_eq!(m[0]["severity"], "warning");
    assert_slack_and_discord_shape(&m[0]);
    stack.shutdown().await;
}

#[tokio::test]
async fn refused_token_requests_over_ten_a_minute_are_critical() {
    let r = receiver(0).await;
    let stack = support::stack_with(options(r.url.clone())).await;
    // The first check only takes a sample of token-issuer's counter.
    more_checks(&stack, 2).await;
    let stranger = stack.user("stranger", false, None).await;
    for _ in 0..20 {
        let (status, _) = stack.try_token(stranger, Uuid::now_v7()).await;
        assert_eq!(status, 404);
    }
    let m = wait_messages(&r, 1).await;
    assert_eq!(m[0]["alert"], "token_failures");
    assert_eq!(m[0]["severity"], "critical");
    // No more refusals: the rate falls back, resolved.
    let m = wait_messages(&r, 2).await;
    assert_eq!(m[1]["alert"], "token_failures");
    assert_eq!(m[1]["severity"], "resolved");
    stack.shutdown().await;
}
