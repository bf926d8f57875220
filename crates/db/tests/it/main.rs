//! The schema itself: migrations go up, down and up again; every foreign key has an index;
//! the database refuses the illegal states DESIGN.md names.

use testkit::TestDb;
use uuid::Uuid;

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let db = TestDb::empty().await;
    let up = db::migrate::run_migrations(&db.url).await.unwrap();
    assert!(up >= 4, "ran {up} migrations");
    assert_eq!(
        db::migrate::run_migrations(&db.url).await.unwrap(),
        0,
        "second run is a no-op"
    );
    let down = db::migrate::revert_all(&db.url).await.unwrap();
    assert_eq!(down, up);
    let client = db.sql().await;
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "down migrations leave no table behind");
    assert_eq!(db::migrate::run_migrations(&db.url).await.unwrap(), up);
}

#[tokio::test]
async fn concurrent_migrations_are_serialised() {
    let db = TestDb::empty().await;
    let (a, b, c) = tokio::join!(
        db::migrate::run_migrations(&db.url),
        db::migrate::run_migrations(&db.url),
        db::migrate::run_migrations(&db.url)
    );
    let total = a.unwrap() + b.unwrap() + c.unwrap();
    assert!(
        total >= 4,
        "each migration ran exactly once in total, got {total}"
    );
}

#[tokio::test]
async fn every_foreign_key_has_an_index() {
    let db = TestDb::new().await;
    let client = db.sql().await;
    let rows = client
        .query(
            "SELECT c.conrelid::regclass::text, a.attname
             FROM pg_constraint c
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
             WHERE c.contype = 'f'
               AND NOT EXISTS (
                 SELECT 1 FROM pg_index i
                 WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])",
            &[],
        )
        .await
        .unwrap();
    let missing: Vec<String> = rows
        .iter()
        .map(|r| format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    assert!(
        missing.is_empty(),
        "foreign keys without a leading index: {missing:?}"
    );
}

async fn session(
    client: &tokio_postgres::Client,
    creator: Uuid,
    status: &str,
) -> Result<Uuid, tokio_postgres::Error> {
    let id = Uuid::new_v4();
    let ended = status == "ended";
    client
        .execute(
            "INSERT INTO live_sessions (id, creator_id, session_type, title, access_type, status, room_name, ended_at, end_reason)
             VALUES ($1, $2, 'video_live', 'hello', 'public', $3, $5,
                     CASE WHEN $4 THEN now() END, CASE WHEN $4 THEN 'host_ended' END)",
            &[&id, &creator, &status, &ended, &format!("live_video_{id}")],
        )
        .await?;
    Ok(id)
}

#[tokio::test]
async fn the_database_refuses_illegal_states() {
    let db = TestDb::new().await;
    let creator = testkit::profile(&db, "creator", true, None).await;
    let viewer = testkit::profile(&db, "viewer", false, None).await;
    let client = db.sql().await;

    // At most one non-ended session per creator; ended ones do not count.
    session(&client, creator, "ended").await.unwrap();
    let first = session(&client, creator, "live").await.unwrap();
    let err = session(&client, creator, "created").await.unwrap_err();
    assert!(
        format!("{err:?}").contains("live_sessions_one_active_per_creator"),
        "{err}"
    );

    // Unknown enum values and out-of-range fields.
    for (column, value) in [
        ("status", "'exploded'"),
        ("session_type", "'tv'"),
        ("access_type", "'free'"),
    ] {
        let err = client
            .execute(
                &format!("UPDATE live_sessions SET {column} = {value} WHERE id = $1"),
                &[&first],
            )
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("check"), "{column}: {err}");
    }
    assert!(
        client
            .execute(
                "UPDATE live_sessions SET title = '' WHERE id = $1",
                &[&first]
            )
            .await
            .is_err()
    );
    // Pay-per-view needs a price, and only pay-per-view has one.
    assert!(
        client
            .execute(
                "UPDATE live_sessions SET access_type = 'pay_per_view' WHERE id = $1",
                &[&first]
            )
            .await
            .is_err()
    );
    // Ended needs ended_at and end_reason.
    assert!(
        client
            .execute(
                "UPDATE live_sessions SET status = 'ended' WHERE id = $1",
                &[&first]
            )
            .await
            .is_err()
    );
    // Room names are unique.
    let other = testkit::profile(&db, "other", true, None).await;
    let err = client
        .execute(
            "INSERT INTO live_sessions (id, creator_id, session_type, title, access_type, room_name)
             SELECT $1, $2, 'audio_room', 't', 'public', room_name FROM live_sessions WHERE id = $3",
            &[&Uuid::new_v4(), &other, &first],
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("room_name"), "{err}");

    // One participant row per (session, user); one payment per (session, viewer).
    let insert_participant = "INSERT INTO live_participants (id, session_id, user_id, role) VALUES ($1, $2, $3, 'viewer')";
    client
        .execute(insert_participant, &[&Uuid::new_v4(), &first, &viewer])
        .await
        .unwrap();
    assert!(
        client
            .execute(insert_participant, &[&Uuid::new_v4(), &first, &viewer])
            .await
            .is_err()
    );
    let insert_payment = "INSERT INTO live_payments (id, session_id, viewer_id, amount, host_share) VALUES ($1, $2, $3, 10, 7)";
    client
        .execute(insert_payment, &[&Uuid::new_v4(), &first, &viewer])
        .await
        .unwrap();
    assert!(
        client
            .execute(insert_payment, &[&Uuid::new_v4(), &first, &viewer])
            .await
            .is_err()
    );

    // balance >= 0
    client
        .execute(
            "INSERT INTO coin_wallets (user_id, balance) VALUES ($1, 5)",
            &[&viewer],
        )
        .await
        .unwrap();
    let err = client
        .execute(
            "UPDATE coin_wallets SET balance = balance - 6 WHERE user_id = $1",
            &[&viewer],
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("balance"), "{err}");

    // Busy: a user is a party of at most one active call.
    let callee = testkit::profile(&db, "callee", false, None).await;
    let call = Uuid::new_v4();
    client
        .execute(
            "INSERT INTO calls (id, caller_id, callee_id, call_type, room_name) VALUES ($1, $2, $3, 'audio_call', $4)",
            &[&call, &viewer, &callee, &format!("call_audio_{call}_1")],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO call_busy (user_id, call_id) VALUES ($1, $2), ($3, $2)",
            &[&viewer, &call, &callee],
        )
        .await
        .unwrap();
    assert!(
        client
            .execute(
                "INSERT INTO call_busy (user_id, call_id) VALUES ($1, $2)",
                &[&callee, &call]
            )
            .await
            .is_err()
    );
    // At most one pending stage invitation or request per user per session.
    let stage = "INSERT INTO stage_requests (id, session_id, user_id, kind, created_by, expires_at) VALUES ($1, $2, $3, 'request', $3, now() + interval '1 minute')";
    client
        .execute(stage, &[&Uuid::new_v4(), &first, &viewer])
        .await
        .unwrap();
    assert!(
        client
            .execute(stage, &[&Uuid::new_v4(), &first, &viewer])
            .await
            .is_err()
    );
    // Dangling references are refused.
    assert!(
        client
            .execute(
                insert_participant,
                &[&Uuid::new_v4(), &Uuid::new_v4(), &viewer]
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_gift_catalogue_and_kill_switch_are_seeded() {
    let db = TestDb::new().await;
    let client = db.sql().await;
    let gifts: i64 = client
        .query_one("SELECT count(*) FROM gift_catalog", &[])
        .await
        .unwrap()
        .get(0);
    assert!(gifts >= 3);
    let mut conn = db.conn().await;
    assert!(
        !db::queries::config::live_sessions_disabled(&mut conn)
            .await
            .unwrap()
    );
    db::queries::config::set(
        &mut conn,
        "live_sessions_disabled",
        serde_json::json!(true),
        None,
    )
    .await
    .unwrap();
    assert!(
        db::queries::config::live_sessions_disabled(&mut conn)
            .await
            .unwrap()
    );
}
