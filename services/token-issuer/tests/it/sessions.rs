use serde_json::json;
use uuid::Uuid;

use crate::{assert_error, claims, spawn_app};

#[tokio::test]
async fn a_public_viewer_gets_a_subscribe_only_token() {
    let app = spawn_app().await;
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let viewer = testkit::profile(&app.db, "viewer", false, None).await;
    let session = app
        .session(creator, "video_live", "public", None, "live")
        .await;

    let (status, body) = app.session_token(viewer, session).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["role"], json!("viewer"));
    assert_eq!(body["roomName"], json!(format!("live_video_{session}")));
    assert_eq!(body["wsUrl"], json!("ws://127.0.0.1:7880"));
    assert!(body["expiresAt"].as_str().unwrap().ends_with('Z'));
    let c = claims(&body);
    assert_eq!(c.identity, viewer.to_string());
    assert_eq!(c.name, "viewer");
    assert!(c.video.room_join);
    assert_eq!(c.video.room, format!("live_video_{session}"));
    assert!(!c.video.can_publish);
    assert!(c.video.can_subscribe);
    assert!(c.video.can_publish_data);
    assert!(!c.video.room_admin);
    // A join only reads: nothing is written for a public viewer.
    assert_eq!(
        app.count("SELECT count(*) FROM live_participants", &[])
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM live_payments", &[]).await,
        0
    );
}

#[tokio::test]
async fn the_creator_is_host_with_room_admin() {
    let app = spawn_app().await;
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let session = app
        .session(creator, "video_live", "pay_per_view", Some(100), "created")
        .await;
    let (status, body) = app.session_token(creator, session).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], json!("host"));
    let c = claims(&body);
    assert!(c.video.can_publish && c.video.room_admin);
    assert!(c.video.can_publish_source("camera") && c.video.can_publish_source("microphone"));
    assert_eq!(
        app.count("SELECT count(*) FROM live_payments", &[]).await,
        0,
        "the host never pays"
    );
}

#[tokio::test]
async fn audio_rooms_restrict_publishing_to_the_microphone() {
    let app = spawn_app().await;
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let speaker = testkit::profile(&app.db, "speaker", false, None).await;
    let listener = testkit::profile(&app.db, "listener", false, None).await;
    let session = app
        .session(creator, "audio_room", "public", None, "live")
        .await;
    app.exec(
        "INSERT INTO live_participants (id, session_id, user_id, role, is_active) VALUES ($1, $2, $3, 'speaker', true)",
        &[&Uuid::new_v4(), &session, &speaker],
    )
    .await;

    let (_, host) = app.session_token(creator, session).await;
    let h = claims(&host);
    assert_eq!(h.video.can_publish_sources, vec!["microphone".to_string()]);
    let (_, body) = app.session_token(speaker, session).await;
    assert_eq!(body["role"], json!("speaker"));
    let s = claims(&body);
    assert!(s.video.can_publish);
    assert_eq!(s.video.can_publish_sources, vec!["microphone".to_string()]);
    assert!(!s.video.can_publish_source("camera"));
    let (_, body) = app.session_token(listener, session).await;
    assert_eq!(body["role"], json!("listener"));
    assert!(!claims(&body).video.can_publish);
}

#[tokio::test]
async fn a_promoted_guest_is_a_co_host() {
    let app = spawn_app().await;
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let guest = testkit::profile(&app.db, "guest", false, None).await;
    let session = app
        .session(creator, "video_live", "public", None, "live")
        .await;
    app.exec(
        "INSERT INTO live_participants (id, session_id, user_id, role, is_active) VALUES ($1, $2, $3, 'co_host', true)",
        &[&Uuid::new_v4(), &session, &guest],
    )
    .await;
    let (_, body) = app.session_token(guest, session).await;
    assert_eq!(body["role"], json!("co_host"));
    let c = claims(&body);
    assert!(c.video.can_publish && !c.video.room_admin);
    assert!(c.video.can_publish_source("camera"));
}

#[tokio::test]
async fn unknown_and_ended_sessions_are_not_found() {
    let app = spawn_app().await;
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let viewer = testkit::profile(&app.db, "viewer", false, None).await;
    let (status, body) = app.session_token(viewer, Uuid::new_v4()).await;
    assert_error(status, &body, 404, "SESSION_NOT_FOUND");
    let ended = app
        .session(creator, "video_live", "public", None, "ended")
        .await;
    let (status, body) = app.session_token(viewer, ended).await;
    assert_error(status, &body, 404, "SESSION_NOT_FOUND");
    let (status, body) = app.session_token(creator, ended).await;
    assert_error(status, &body, 404, "SESSION_NOT_FOUND");
}

#[tokio::test]
async fn bans_apply_to_the_next_token_at_once() {
    let app = spawn_app().await;
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let viewer = testkit::profile(&app.db, "viewer", false, None).await;
    let session = app
        .session(creator, "video_live", "public", None, "live")
        .await;
    assert_eq!(app.session_token(viewer, session).await.0, 200);

    // The main app bans directly in the database.
    app.exec(
        "UPDATE profiles SET banned_until = now() + interval '1 hour' WHERE id = $1",
        &[&viewer],
    )
    .await;
    let (status, body) = app.session_token(viewer, session).await;
    assert_error(status, &body, 403, "BANNED");
    // An expired ban no longer applies.
    app.exec(
        "UPDATE profiles SET banned_until = now() - interval '1 second' WHERE id = $1",
        &[&viewer],
    )
    .await;
    assert_eq!(app.session_token(viewer, session).await.0, 200);

    app.exec(
        "INSERT INTO live_session_bans (session_id, user_id, banned_by) VALUES ($1, $2, $3)",
        &[&session, &viewer, &creator],
    )
    .await;
    let (status, body) = app.session_token(viewer, session).await;
    assert_error(status, &body, 403, "BANNED");

    // A creator ban covers every session of that creator.
    let other = testkit::profile(&app.db, "other", false, None).await;
    app.exec(
        "INSERT INTO creator_bans (creator_id, user_id) VALUES ($1, $2)",
        &[&creator, &other],
    )
    .await;
    let (status, body) = app.session_token(other, session).await;
    assert_error(status, &body, 403, "BANNED");
    // ...but the host is never banned from its own session.
    assert_eq!(app.session_token(creator, session).await.0, 200);
}

#[tokio::test]
async fn subscribers_only_needs_an_active_subscription() {
    let app = spawn_app().await;
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let fan = testkit::profile(&app.db, "fan", false, None).await;
    let session = app
        .session(creator, "video_live", "subscribers_only", None, "live")
        .await;
    let (status, body) = app.session_token(fan, session).await;
    assert_error(status, &body, 403, "SUBSCRIPTION_REQUIRED");
    app.exec(
        "INSERT INTO creator_subscriptions (subscriber_id, creator_id, status, expires_at) VALUES ($1, $2, 'active', now() - interval '1 day')",
        &[&fan, &creator],
    )
    .await;
    let (status, body) = app.session_token(fan, session).await;
    assert_error(status, &body, 403, "SUBSCRIPTION_REQUIRED");
    app.exec(
        "UPDATE creator_subscriptions SET expires_at = now() + interval '1 day' WHERE subscriber_id = $1",
        &[&fan],
    )
    .await;
    assert_eq!(app.session_token(fan, session).await.0, 200);
}

#[tokio::test]
async fn pay_per_view_charges_once_with_its_ledger_rows() {
    let app = spawn_app().await;
    let creator = testkit::profile(&app.db, "creator", true, None).await;
    let poor = testkit::profile(&app.db, "poor", false, None).await;
    let rich = testkit::profile(&app.db, "rich", false, None).await;
    let session = app
        .session(creator, "video_live", "pay_per_view", Some(99), "live")
        .await;
    app.exec(
        "INSERT INTO coin_wallets (user_id, balance) VALUES ($1, 98), ($2, 1000)",
        &[&poor, &rich],
    )
    .await;

    let (status, body) = app.session_token(poor, session).await;
    assert_error(status, &body, 402, "PAYMENT_REQUIRED");
    assert_eq!(
        app.count(
            "SELECT balance FROM coin_wallets WHERE user_id = $1",
            &[&poor]
        )
        .await,
        98
    );
    assert_eq!(
        app.count("SELECT count(*) FROM live_payments", &[]).await,
        0,
        "nothing stored"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM coin_transactions", &[])
            .await,
        0
    );

    // Ten joins at once: one charge.
    let joins = (0..10).map(|_| app.session_token(rich, session));
    for (status, body) in futures_util::future::join_all(joins).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["role"], json!("viewer"));
    }
    assert_eq!(
        app.count(
            "SELECT balance FROM coin_wallets WHERE user_id = $1",
            &[&rich]
        )
        .await,
        901
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM live_payments WHERE viewer_id = $1",
            &[&rich]
        )
        .await,
        1
    );
    // The host's share: floor(99 × 70 / 100) = 69.
    assert_eq!(
        app.count(
            "SELECT balance FROM coin_wallets WHERE user_id = $1",
            &[&creator]
        )
        .await,
        69
    );
    let ledger = app
        .db
        .sql()
        .await
        .query(
            "SELECT user_id, amount, kind, ref_id FROM coin_transactions ORDER BY amount",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(Uuid, i64, String, Uuid)> = ledger
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (rich, -99, "ppv_purchase".to_string(), session),
            (creator, 69, "ppv_revenue".to_string(), session),
        ]
    );
    // A later re-join is never charged again, even with the wallet emptied.
    app.exec(
        "UPDATE coin_wallets SET balance = 0 WHERE user_id = $1",
        &[&rich],
    )
    .await;
    assert_eq!(app.session_token(rich, session).await.0, 200);
}
