//! Push paths against the APNs and FCM stand-ins (and the `log` mode).

use std::time::Duration;

use uuid::Uuid;

use crate::support::{self, World, fcm_token, ios_token};

const WAIT: Duration = Duration::from_secs(20);

/// A callee with an iOS VoIP token, an iOS standard token and an Android token.
async fn callee_with_three_devices(w: &World) -> (Uuid, String, String, String) {
    let callee = w.user("bob").await;
    let (voip, standard, android) = (ios_token(), ios_token(), fcm_token());
    w.device(callee, "ios", "voip", &voip).await;
    w.device(callee, "ios", "standard", &standard).await;
    w.device(callee, "android", "standard", &android).await;
    (callee, voip, standard, android)
}

#[tokio::test]
async fn incoming_call_is_a_voip_push_and_a_high_priority_fcm_data_message() {
    let w = support::with_providers().await;
    let caller = w
        .named_user(&format!(
            "alice_{}",
            &Uuid::new_v4().simple().to_string()[..6]
        ))
        .await;
    let (callee, voip, standard, android) = callee_with_three_devices(&w).await;
    let call = Uuid::now_v7();
    let ev = w.call_event("initiated", call, caller, callee).await;

    let result = w.push_result(call).await;
    assert!(result.delivered, "{result:?}");
    assert_eq!(
        result.devices, 2,
        "VoIP + Android; the standard iOS token is not rung"
    );
    assert_eq!(result.error, "");
    assert_eq!(result.purpose, "incoming_call");
    assert_eq!(result.user_id, callee.to_string());
    assert_eq!(result.ref_id, call.to_string());

    let sim = w.sim();
    let pushes = sim.apns.received_for(&voip);
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let p = &pushes[0];
    assert_eq!(p.push_type, "voip");
    assert_eq!(p.topic, format!("{}.voip", sim.apns.credentials().topic));
    assert_eq!(p.priority, 10);
    assert_eq!(p.expiration, Some(0));
    assert_eq!(p.payload["type"], "incoming_call");
    assert_eq!(p.payload["callId"], call.to_string());
    assert_eq!(p.payload["callerId"], caller.to_string());
    assert!(
        p.payload["callerName"]
            .as_str()
            .unwrap()
            .starts_with("alice_")
    );
    assert_eq!(p.payload["callType"], "video_call");
    assert!(sim.apns.received_for(&standard).is_empty());

    let fcm = sim.fcm.received_for(&android);
    assert_eq!(fcm.len(), 1, "{fcm:?}");
    assert!(fcm[0].data_only);
    assert_eq!(fcm[0].android_priority.as_deref(), Some("high"));
    assert_eq!(fcm[0].ttl.as_deref(), Some("30s"));
    assert_eq!(fcm[0].data["callId"], call.to_string());
    assert_eq!(
        fcm[0].data["callerName"],
        p.payload["callerName"].as_str().unwrap()
    );
    assert_eq!(sim.fcm.tokens_issued(), 1);

    let rows = w.deliveries(ev.id).await;
    assert_eq!(
        rows,
        vec![
            (
                "apns".into(),
                "voip".into(),
                "delivered".into(),
                Some(200),
                None
            ),
            (
                "fcm".into(),
                "data".into(),
                "delivered".into(),
                Some(200),
                None
            ),
        ]
    );
    assert!(
        w.processed(notifier::push::dispatch::CALL_CONSUMER, ev.id)
            .await
    );
}

#[tokio::test]
async fn without_a_voip_token_ios_standard_tokens_get_an_alert_ring() {
    let w = support::with_providers().await;
    let (caller, callee) = (w.user("alice").await, w.user("bob").await);
    let standard = ios_token();
    w.device(callee, "ios", "standard", &standard).await;
    let call = Uuid::now_v7();
    w.call_event("initiated", call, caller, callee).await;
    assert!(w.push_result(call).await.delivered);
    let pushes = w.sim().apns.received_for(&standard);
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].push_type, "alert");
    assert_eq!(pushes[0].topic, w.sim().apns.credentials().topic);
    assert!(pushes[0].payload["aps"]["alert"]["title"].is_string());
    assert_eq!(pushes[0].payload["callId"], call.to_string());
}

#[tokio::test]
async fn cancel_and_missed_are_standard_pushes_never_voip() {
    let w = support::with_providers().await;
    let caller = w
        .named_user(&format!(
            "carol_{}",
            &Uuid::new_v4().simple().to_string()[..6]
        ))
        .await;
    let (callee, voip, standard, android) = callee_with_three_devices(&w).await;
    let (c1, c2) = (Uuid::now_v7(), Uuid::now_v7());
    let cancelled = w.call_event("cancelled", c1, caller, callee).await;
    let missed = w.call_event("missed", c2, caller, callee).await;
    for ev in [&cancelled, &missed] {
        testkit::eventually(WAIT, "the update handled", || async {
            w.processed(notifier::push::dispatch::CALL_CONSUMER, ev.id)
                .await
                .then_some(())
        })
        .await;
    }
    let sim = w.sim();
    assert!(
        sim.apns.received_for(&voip).is_empty(),
        "no VoIP push for cancel or missed"
    );
    assert!(sim.apns.received().iter().all(|p| p.push_type != "voip"));
    let ios = sim.apns.received_for(&standard);
    assert_eq!(ios.len(), 2, "{ios:?}");
    let bg = ios
        .iter()
        .find(|p| p.payload["callId"] == c1.to_string())
        .unwrap();
    assert_eq!(bg.push_type, "background");
    assert_eq!(bg.priority, 5);
    assert_eq!(bg.payload["type"], "call_cancelled");
    let alert = ios
        .iter()
        .find(|p| p.payload["callId"] == c2.to_string())
        .unwrap();
    assert_eq!(alert.push_type, "alert");
    let title = alert.payload["aps"]["alert"]["title"].as_str().unwrap();
    assert!(title.starts_with("Missed call from carol_"), "{title}");

    let fcm = sim.fcm.received_for(&android);
    assert_eq!(fcm.len(), 2);
    let cancel_msg = fcm
        .iter()
        .find(|p| p.data["callId"] == c1.to_string())
        .unwrap();
    assert!(cancel_msg.data_only);
    assert_eq!(cancel_msg.data["type"], "call_cancelled");
    let missed_msg = fcm
        .iter()
        .find(|p| p.data["callId"] == c2.to_string())
        .unwrap();
    assert!(
        !missed_msg.data_only,
        "a missed call is a visible notification"
    );
    assert_eq!(missed_msg.data["type"], "missed_call");
    // No push_result for these: only the ring answers call-signaling.
    assert!(w.push_results(c1).await.is_empty() && w.push_results(c2).await.is_empty());
    assert_eq!(w.deliveries(missed.id).await.len(), 2);
}

#[tokio::test]
async fn unregistered_tokens_are_removed() {
    let w = support::with_providers().await;
    let (caller, callee) = (w.user("alice").await, w.user("bob").await);
    let (voip, android) = (ios_token(), fcm_token());
    // Not hex: APNs answers 400 BadDeviceToken, which also means "forget it".
    let bad_ios = "not-a-hex-token".to_owned();
    w.device(callee, "ios", "voip", &voip).await;
    w.device(callee, "ios", "voip", &bad_ios).await;
    w.device(callee, "android", "standard", &android).await;
    w.sim().apns.faults().unregister(&voip);
    w.sim().fcm.faults().unregister(&android);
    let call = Uuid::now_v7();
    let ev = w.call_event("initiated", call, caller, callee).await;
    let result = w.push_result(call).await;
    assert!(!result.delivered);
    assert_eq!(result.devices, 3);
    assert!(!result.error.is_empty());
    for t in [&voip, &bad_ios, &android] {
        assert_eq!(w.device_count(t).await, 0, "{t} removed");
    }
    let rows = w.deliveries(ev.id).await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.2 == "unregistered"), "{rows:?}");
    let statuses: Vec<_> = rows.iter().map(|r| r.3).collect();
    assert!(
        statuses.contains(&Some(410))
            && statuses.contains(&Some(400))
            && statuses.contains(&Some(404)),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_provider_failure_is_logged_and_the_result_is_not_delivered() {
    let w = support::with_providers().await;
    let (caller, callee) = (w.user("alice").await, w.user("bob").await);
    let voip = ios_token();
    w.device(callee, "ios", "voip", &voip).await;
    w.sim().apns.faults().fail_next(1, 500);
    let call = Uuid::now_v7();
    let ev = w.call_event("initiated", call, caller, callee).await;
    let result = w.push_result(call).await;
    assert!(!result.delivered);
    assert_eq!(result.devices, 1);
    assert!(result.error.contains("500"), "{result:?}");
    let rows = w.deliveries(ev.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].2.as_str(), rows[0].3), ("failed", Some(500)));
    assert!(
        rows[0]
            .4
            .as_deref()
            .unwrap()
            .contains("InternalServerError")
    );
    assert_eq!(w.device_count(&voip).await, 1, "a failure keeps the token");
}

#[tokio::test]
async fn one_device_accepting_is_enough() {
    let w = support::with_providers().await;
    let (caller, callee) = (w.user("alice").await, w.user("bob").await);
    let (voip, android) = (ios_token(), fcm_token());
    w.device(callee, "ios", "voip", &voip).await;
    w.device(callee, "android", "standard", &android).await;
    w.sim().fcm.faults().fail_next(1, 503);
    let call = Uuid::now_v7();
    w.call_event("initiated", call, caller, callee).await;
    let result = w.push_result(call).await;
    assert!(result.delivered, "{result:?}");
    assert_eq!((result.devices, result.error.as_str()), (2, ""));
}

#[tokio::test]
async fn a_slow_provider_is_cut_off_by_the_timeout() {
    let w = support::world_with(true, |c| c.timeout = Duration::from_millis(300)).await;
    let (caller, callee) = (w.user("alice").await, w.user("bob").await);
    let voip = ios_token();
    w.device(callee, "ios", "voip", &voip).await;
    w.sim().apns.faults().set_delay(Duration::from_secs(3));
    let call = Uuid::now_v7();
    let ev = w.call_event("initiated", call, caller, callee).await;
    let result = w.push_result(call).await;
    assert!(!result.delivered);
    assert!(result.error.contains("timed out"), "{result:?}");
    let rows = w.deliveries(ev.id).await;
    assert_eq!((rows[0].2.as_str(), rows[0].3), ("failed", None));
}

#[tokio::test]
async fn a_callee_without_devices_is_no_device_at_once() {
    let w = support::with_providers().await;
    let (caller, callee) = (w.user("alice").await, w.user("bob").await);
    let call = Uuid::now_v7();
    let ev = w.call_event("initiated", call, caller, callee).await;
    let result = w.push_result(call).await;
    assert!(!result.delivered);
    assert_eq!((result.devices, result.error.as_str()), (0, "no_device"));
    assert!(w.deliveries(ev.id).await.is_empty());
    assert!(w.sim().apns.received().is_empty() && w.sim().fcm.received().is_empty());
}

#[tokio::test]
async fn log_mode_logs_every_push_as_delivered() {
    let w = support::log_mode().await;
    let (caller, callee) = (w.user("alice").await, w.user("bob").await);
    w.device(callee, "ios", "voip", &ios_token()).await;
    w.device(callee, "android", "standard", &fcm_token()).await;
    let call = Uuid::now_v7();
    let ev = w.call_event("initiated", call, caller, callee).await;
    let result = w.push_result(call).await;
    assert!(result.delivered);
    assert_eq!((result.devices, result.error.as_str()), (2, ""));
    let rows = w.deliveries(ev.id).await;
    assert_eq!(
        rows,
        vec![
            ("log".into(), "data".into(), "delivered".into(), None, None),
            ("log".into(), "voip".into(), "delivered".into(), None, None),
        ]
    );
}

#[tokio::test]
async fn bad_events_are_dead_lettered_and_change_nothing() {
    let w = support::with_providers().await;
    let callee = w.user("bob").await;
    w.device(callee, "ios", "voip", &ios_token()).await;
    // A payload that is not a CallChanged, and one whose ids are not UUIDs.
    let mut garbage = bus::Event::new(
        bus::Family::Call,
        "initiated",
        Uuid::now_v7(),
        &bus::proto::CallChanged::default(),
    );
    garbage.payload = vec![0xff, 0xff, 0xff, 0x01];
    w.publish(&garbage).await;
    let not_uuid = bus::proto::CallChanged {
        call_id: "c".into(),
        caller_id: "alice".into(),
        callee_id: callee.to_string(),
        call_type: "audio_call".into(),
        status: "initiated".into(),
        ..Default::default()
    };
    let bad_ids = bus::Event::new(bus::Family::Call, "initiated", "c", &not_uuid);
    w.publish(&bad_ids).await;

    let (_, js) = bus::connect(&testkit::nats_url()).await.unwrap();
    let subjects = w.subjects();
    testkit::eventually(WAIT, "both events dead-lettered", || async {
        let mut stream = js.get_stream(subjects.dead_letter_stream()).await.ok()?;
        let info = stream.info().await.ok()?;
        (info.state.messages >= 2).then_some(())
    })
    .await;
    assert_eq!(w.count("SELECT count(*) FROM push_deliveries").await, 0);
    assert!(w.push_results(Uuid::nil()).await.is_empty());
    assert_eq!(
        w.count("SELECT count(*) FROM outbox WHERE subject LIKE '%notify.push_result'")
            .await,
        0
    );
    assert!(w.sim().apns.received().is_empty());
}

/// The creator, a live session of theirs, and `n` followers (half iOS with a standard and a
/// VoIP token, half Android), made in SQL. Returns (creator, session).
async fn creator_with_followers(w: &World, n: i32) -> (Uuid, Uuid) {
    let creator = w
        .named_user(&format!(
            "star_{}",
            &Uuid::new_v4().simple().to_string()[..6]
        ))
        .await;
    let session = Uuid::now_v7();
    let sql = w.sql().await;
    sql.execute(
        "INSERT INTO live_sessions (id, creator_id, session_type, title, access_type, status, room_name, started_at) \
         VALUES ($1, $2, 'video_live', 'Friday show', 'public', 'live', $3, now())",
        &[&session, &creator, &format!("live_video_{session}")],
    )
    .await
    .unwrap();
    sql.batch_execute(&format!(
        "CREATE TEMP TABLE fans AS SELECT gen_random_uuid() AS id, g FROM generate_series(1, {n}) g;
         INSERT INTO profiles (id, username) SELECT id, 'fan_' || replace(id::text, '-', '') FROM fans;
         INSERT INTO follows (follower_id, creator_id) SELECT id, '{creator}' FROM fans;
         INSERT INTO push_devices (id, user_id, platform, kind, token)
           SELECT gen_random_uuid(), id, 'ios', 'standard', md5(id::text) || md5(g::text) FROM fans WHERE g % 2 = 0;
         INSERT INTO push_devices (id, user_id, platform, kind, token)
           SELECT gen_random_uuid(), id, 'ios', 'voip', md5(g::text) || md5(id::text) FROM fans WHERE g % 2 = 0;
         INSERT INTO push_devices (id, user_id, platform, kind, token)
           SELECT gen_random_uuid(), id, 'android', 'standard', 'fcm_' || md5(id::text) FROM fans WHERE g % 2 = 1;
         DROP TABLE fans;"
    ))
    .await
    .unwrap();
    (creator, session)
}

fn live_event(creator: Uuid, session: Uuid) -> bus::Event {
    let payload = bus::proto::SessionChanged {
        session_id: session.to_string(),
        creator_id: creator.to_string(),
        session_type: "video_live".into(),
        status: "live".into(),
        previous_status: "created".into(),
        title: "Friday show".into(),
        ..Default::default()
    };
    bus::Event::new(bus::Family::Session, "live", session, &payload)
}

#[tokio::test]
async fn session_live_tells_1200_followers_once_in_batches() {
    let w = support::with_providers().await;
    let (creator, session) = creator_with_followers(&w, 1200).await;
    // Twice: a second `session.live` of the same session (a redelivery under a new id, or
    // a replica publishing it again) must not tell anyone again.
    let first = live_event(creator, session);
    let second = live_event(creator, session);
    w.publish(&first).await;
    w.publish(&second).await;
    let consumer = notifier::push::dispatch::SESSION_CONSUMER;
    for ev in [&first, &second] {
        testkit::eventually(Duration::from_secs(60), "session.live handled", || async {
            w.processed(consumer, ev.id).await.then_some(())
        })
        .await;
    }
    let sim = w.sim();
    let (apns, fcm) = (sim.apns.received(), sim.fcm.received());
    assert_eq!(apns.len(), 600, "one alert per iOS follower");
    assert_eq!(fcm.len(), 600, "one notification per Android follower");
    assert!(
        apns.iter().all(|p| p.push_type == "alert"),
        "no VoIP push for a live session"
    );
    let mut tokens: Vec<_> = apns
        .iter()
        .map(|p| p.token.clone())
        .chain(fcm.iter().map(|p| p.token.clone()))
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 1200, "every follower exactly once");
    let title = apns[0].payload["aps"]["alert"]["title"].as_str().unwrap();
    assert!(
        title.starts_with("star_") && title.ends_with(" is live"),
        "{title}"
    );
    assert_eq!(
        w.count(&format!(
            "SELECT count(*) FROM live_notifications_sent WHERE session_id = '{session}'"
        ))
        .await,
        1200
    );
    assert_eq!(w.count("SELECT count(*) FROM push_deliveries").await, 1200);
}

#[tokio::test]
async fn a_gift_is_an_alert_to_the_recipient() {
    let w = support::with_providers().await;
    let sender = w
        .named_user(&format!(
            "dave_{}",
            &Uuid::new_v4().simple().to_string()[..6]
        ))
        .await;
    let host = w.user("host").await;
    let (ios, android, voip) = (ios_token(), fcm_token(), ios_token());
    w.device(host, "ios", "standard", &ios).await;
    w.device(host, "ios", "voip", &voip).await;
    w.device(host, "android", "standard", &android).await;
    let session = Uuid::now_v7();
    let payload = bus::proto::GiftSent {
        session_id: session.to_string(),
        gift_row_id: Uuid::now_v7().to_string(),
        sender_id: sender.to_string(),
        recipient_id: host.to_string(),
        gift_id: Uuid::now_v7().to_string(),
        coins: 50,
        host_share: 35,
    };
    let ev = bus::Event::new(bus::Family::Session, "gift_sent", session, &payload);
    w.publish(&ev).await;
    testkit::eventually(WAIT, "gift handled", || async {
        w.processed(notifier::push::dispatch::SESSION_CONSUMER, ev.id)
            .await
            .then_some(())
    })
    .await;
    let sim = w.sim();
    let pushes = sim.apns.received_for(&ios);
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].push_type, "alert");
    let title = pushes[0].payload["aps"]["alert"]["title"].as_str().unwrap();
    assert!(
        title.starts_with("dave_") && title.ends_with("sent you a gift"),
        "{title}"
    );
    assert!(sim.apns.received_for(&voip).is_empty());
    let fcm = sim.fcm.received_for(&android);
    assert_eq!(fcm.len(), 1);
    assert_eq!(fcm[0].data["type"], "gift_received");
    assert_eq!(fcm[0].data["coins"], "50");
    assert_eq!(w.deliveries(ev.id).await.len(), 2);
}
