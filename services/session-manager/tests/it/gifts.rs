//! Gift routes: the catalogue, sending with its money and ledger, every bad input and every
//! forbidden actor, and `Idempotency-Key`.
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::chat::{BadBody, joined_viewer, published_event};
use crate::{Stack, assert_error, stack};

pub const ROSE: &str = "0190e7a0-0000-7000-8000-000000000001"; // 1 coin
pub const HEART: &str = "0190e7a0-0000-7000-8000-000000000002"; // 5
pub const STAR: &str = "0190e7a0-0000-7000-8000-000000000003"; // 10
pub const CROWN: &str = "0190e7a0-0000-7000-8000-000000000004"; // 100
pub const ROCKET: &str = "0190e7a0-0000-7000-8000-000000000005"; // 500

pub fn gifts_url(stack: &Stack, session: impl std::fmt::Display) -> String {
    format!("{}/v1/sessions/{session}/gifts", stack.sessions)
}

/// Gives `user` a wallet of `coins`, with the `top_up` ledger row that explains it.
pub async fn fund(stack: &Stack, user: Uuid, coins: i64) {
    let sql = stack.sql().await;
    sql.execute(
        "INSERT INTO coin_wallets (user_id, balance) VALUES ($1, $2)",
        &[&user, &coins],
    )
    .await
    .unwrap();
    if coins != 0 {
        sql.execute(
            "INSERT INTO coin_transactions (user_id, amount, kind) VALUES ($1, $2, 'top_up')",
            &[&user, &coins],
        )
        .await
        .unwrap();
    }
}

pub async fn balance(stack: &Stack, user: Uuid) -> Option<i64> {
    stack
        .sql()
        .await
        .query_opt(
            "SELECT balance FROM coin_wallets WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// Sends a gift, with an `Idempotency-Key` when given.
pub async fn send(
    stack: &Stack,
    user: Uuid,
    session: Uuid,
    gift: &str,
    key: Option<&str>,
) -> (StatusCode, Value, bool) {
    try_send(stack, user, session, gift, key).await.unwrap()
}

/// `send`, with transport errors returned (the money test retries them).
pub async fn try_send(
    stack: &Stack,
    user: Uuid,
    session: Uuid,
    gift: &str,
    key: Option<&str>,
) -> reqwest::Result<(StatusCode, Value, bool)> {
    let mut req = stack
        .http
        .post(gifts_url(stack, session))
        .bearer_auth(testkit::token_for(user))
        .json(&json!({ "giftId": gift }));
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let res = req.send().await?;
    let status = res.status();
    let replayed = res.headers().get("idempotent-replayed").is_some();
    Ok((status, res.json().await.unwrap_or(Value::Null), replayed))
}

/// Gifts, ledger rows and gift events stored, and the session's counters.
async fn money_rows(stack: &Stack, session: Uuid) -> (i64, i64, i64, i64, i64) {
    let row = stack
        .sql()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM live_gifts), \
                    (SELECT count(*) FROM coin_transactions WHERE kind LIKE 'gift%'), \
                    (SELECT count(*) FROM outbox WHERE subject LIKE '%session.gift_sent'), \
                    total_gifts_received, total_gift_coins \
             FROM live_sessions WHERE id = $1",
            &[&session],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

/// A live video session with a participant holding `coins`.
async fn live_with_sender(stack: &Stack, coins: i64) -> (Uuid, Uuid, Uuid) {
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let session = stack.live_session(host, "video_live").await;
    let sender = joined_viewer(stack, session, "sender").await;
    fund(stack, sender, coins).await;
    (host, session, sender)
}

#[tokio::test]
async fn the_catalogue_lists_the_gifts_on_offer() {
    let stack = stack().await;
    let user = testkit::profile(&stack.db, "user", false, None).await;
    stack
        .sql()
        .await
        .execute(
            "INSERT INTO gift_catalog (id, name, coin_price, active, sort_order) \
             VALUES ($1, 'Withdrawn', 7, false, 0)",
            &[&Uuid::now_v7()],
        )
        .await
        .unwrap();
    let (status, body) = stack
        .call(
            Method::GET,
            format!("{}/v1/gifts", stack.sessions),
            user,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "gifts": [
            {"id": ROSE, "name": "Rose", "coinPrice": 1},
            {"id": HEART, "name": "Heart", "coinPrice": 5},
            {"id": STAR, "name": "Star", "coinPrice": 10},
            {"id": CROWN, "name": "Crown", "coinPrice": 100},
            {"id": ROCKET, "name": "Rocket", "coinPrice": 500},
        ]})
    );
    let (status, body) = stack
        .call(
            Method::GET,
            format!("{}/v1/gifts", stack.sessions),
            Uuid::new_v4(),
            None,
        )
        .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = stack
        .raw(
            Method::GET,
            format!("{}/v1/gifts", stack.sessions),
            None,
            None,
            None,
        )
        .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_gift_debits_the_sender_credits_the_host_and_is_published() {
    let stack = stack().await;
    let (host, session, sender) = live_with_sender(&stack, 100).await;
    assert_eq!(
        balance(&stack, host).await,
        None,
        "the host has no wallet yet"
    );

    let (status, body, replayed) = send(&stack, sender, session, STAR, None).await;
    assert_eq!(status, 201, "{body}");
    assert!(!replayed);
    let g = &body["gift"];
    let id: Uuid = g["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        body,
        json!({"success": true, "gift": {
            "id": id, "sessionId": session, "senderId": sender, "giftId": STAR,
            "coins": 10, "hostShare": 7, "createdAt": g["createdAt"],
        }})
    );
    assert_eq!(balance(&stack, sender).await, Some(90));
    assert_eq!(
        balance(&stack, host).await,
        Some(7),
        "a wallet on the first credit"
    );

    let ledger = stack
        .sql()
        .await
        .query(
            "SELECT user_id, amount, kind, ref_id FROM coin_transactions \
             WHERE kind LIKE 'gift%' ORDER BY amount",
            &[],
        )
        .await
        .unwrap();
    let ledger: Vec<(Uuid, i64, String, Option<Uuid>)> = ledger
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        ledger,
        [
            (sender, -10, "gift_sent".to_owned(), Some(id)),
            (host, 7, "gift_received".to_owned(), Some(id)),
        ]
    );
    let row = stack
        .sql()
        .await
        .query_one(
            "SELECT recipient_id, coins, host_share, platform_share FROM live_gifts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, Uuid>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3)
        ),
        (host, 10, 7, 3),
        "the platform keeps the rest, on the gift row"
    );
    let s = stack.session(sender, session).await;
    assert_eq!(s["totalGiftsReceived"], json!(1));
    assert_eq!(s["totalGiftCoins"], json!(10));

    // A second gift from the same sender; the host's wallet is credited again.
    let (status, body, _) = send(&stack, sender, session, HEART, None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["gift"]["hostShare"], json!(3), "floor(5 × 70 / 100)");
    assert_eq!(balance(&stack, sender).await, Some(85));
    assert_eq!(balance(&stack, host).await, Some(10));
    let s = stack.session(sender, session).await;
    assert_eq!(s["totalGiftsReceived"], json!(2), "gifts counted");
    assert_eq!(s["totalGiftCoins"], json!(15), "coins counted");

    // The event, written in the gift's transaction and published by the relay.
    let ev = published_event(&stack, "session.gift_sent").await;
    assert_eq!(ev.event_type, "session.gift_sent");
    assert_eq!(ev.aggregate_id, session.to_string());
    assert_eq!(
        ev.payload::<bus::proto::GiftSent>().unwrap(),
        bus::proto::GiftSent {
            session_id: session.to_string(),
            gift_row_id: id.to_string(),
            sender_id: sender.to_string(),
            recipient_id: host.to_string(),
            gift_id: STAR.into(),
            coins: 10,
            host_share: 7,
        }
    );
}

#[tokio::test]
async fn a_share_of_zero_moves_nothing_to_the_host() {
    let stack = stack().await;
    let (host, session, sender) = live_with_sender(&stack, 1).await;
    let (status, body, _) = send(&stack, sender, session, ROSE, None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["gift"]["hostShare"], json!(0), "floor(1 × 70 / 100)");
    assert_eq!(balance(&stack, sender).await, Some(0));
    assert_eq!(balance(&stack, host).await, None);
    let (gifts, ledger, events, count, coins) = money_rows(&stack, session).await;
    assert_eq!((gifts, ledger, events, count, coins), (1, 1, 1, 1, 1));
    // Now the sender has nothing left.
    let (status, body, _) = send(&stack, sender, session, ROSE, None).await;
    assert_error(status, &body, 402, "PAYMENT_REQUIRED");
}

#[tokio::test]
async fn bad_inputs_are_refused_and_nothing_is_stored() {
    let stack = stack().await;
    let (_host, session, sender) = live_with_sender(&stack, 1000).await;
    let url = gifts_url(&stack, session);
    let auth = Some(format!("Bearer {}", testkit::token_for(sender)));
    let cases: Vec<BadBody> = vec![
        (
            "not JSON",
            Some("application/json"),
            b"{\"giftId\"".to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "no content type",
            None,
            format!(r#"{{"giftId":"{STAR}"}}"#).into_bytes(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "an array",
            Some("application/json"),
            format!(r#"["{STAR}"]"#).into_bytes(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "no giftId",
            Some("application/json"),
            b"{}".to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "giftId not a UUID",
            Some("application/json"),
            br#"{"giftId":"rose"}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "giftId a number",
            Some("application/json"),
            br#"{"giftId":1}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "unknown field",
            Some("application/json"),
            format!(r#"{{"giftId":"{STAR}","coins":1}}"#).into_bytes(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            "over 64 KiB",
            Some("application/json"),
            serde_json::to_vec(&json!({"giftId": STAR, "x": "a".repeat(70_000)})).unwrap(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (what, ct, body, code, error) in cases {
        let (status, answer) = stack
            .raw(Method::POST, url.clone(), auth.clone(), ct, Some(body))
            .await;
        assert_eq!(status.as_u16(), code, "{what}: {answer}");
        assert_error(status, &answer, code, error);
    }
    // Malformed Idempotency-Key headers: refused before anything runs.
    let long = "k".repeat(256);
    for (what, key) in [
        ("empty", &b""[..]),
        ("256 characters", long.as_bytes()),
        ("a tab inside", b"a\tb"),
        ("not ASCII", "clé".as_bytes()),
    ] {
        let res = stack
            .http
            .post(url.clone())
            .bearer_auth(testkit::token_for(sender))
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(key).unwrap(),
            )
            .json(&json!({ "giftId": STAR }))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let answer: Value = res.json().await.unwrap();
        assert_eq!(status, 422, "{what}: {answer}");
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
    }
    let res = stack
        .http
        .post(url.clone())
        .bearer_auth(testkit::token_for(sender))
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b")
        .json(&json!({ "giftId": STAR }))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let answer: Value = res.json().await.unwrap();
    assert_error(status, &answer, 422, "VALIDATION_ERROR");
    // Bad auth and a bad path.
    for authorization in [None, Some("Bearer nope".to_owned())] {
        let (status, answer) = stack
            .raw(
                Method::POST,
                url.clone(),
                authorization,
                Some("application/json"),
                Some(format!(r#"{{"giftId":"{STAR}"}}"#).into_bytes()),
            )
            .await;
        assert_error(status, &answer, 401, "UNAUTHORIZED");
    }
    let (status, answer, _) = send(&stack, Uuid::new_v4(), session, STAR, Some("k")).await;
    assert_error(status, &answer, 401, "UNAUTHORIZED");
    let (status, answer) = stack
        .call(
            Method::POST,
            format!("{}/v1/sessions/nope/gifts", stack.sessions),
            sender,
            Some(json!({ "giftId": STAR })),
        )
        .await;
    assert_error(status, &answer, 422, "VALIDATION_ERROR");

    assert_eq!(balance(&stack, sender).await, Some(1000));
    assert_eq!(money_rows(&stack, session).await, (0, 0, 0, 0, 0));
    assert_eq!(
        stack
            .count("SELECT count(*) FROM idempotency_keys", &[])
            .await,
        0
    );
}

#[tokio::test]
async fn forbidden_actors_unknown_things_and_short_balances_are_refused() {
    let stack = stack().await;
    let (host, session, sender) = live_with_sender(&stack, 4).await;
    fund(&stack, host, 1000).await;
    let cases = [
        (
            "unknown session",
            sender,
            Uuid::new_v4(),
            STAR,
            404,
            "SESSION_NOT_FOUND",
        ),
        (
            "the host gifting itself",
            host,
            session,
            STAR,
            403,
            "FORBIDDEN",
        ),
        (
            "unknown gift",
            sender,
            session,
            "0190e7a0-0000-7000-8000-0000000000ff",
            404,
            "NOT_FOUND",
        ),
        (
            "balance 4 for a Heart of 5",
            sender,
            session,
            HEART,
            402,
            "PAYMENT_REQUIRED",
        ),
    ];
    for (what, user, s, gift, code, error) in cases {
        let (status, answer, _) = send(&stack, user, s, gift, None).await;
        assert_eq!(status.as_u16(), code, "{what}: {answer}");
        assert_error(status, &answer, code, error);
    }
    // A stranger (never in the room), one without a wallet, a viewer who left, a banned one.
    let stranger = testkit::profile(&stack.db, "stranger", false, None).await;
    fund(&stack, stranger, 1000).await;
    let (status, answer, _) = send(&stack, stranger, session, STAR, None).await;
    assert_error(status, &answer, 403, "FORBIDDEN");
    let walletless = joined_viewer(&stack, session, "walletless").await;
    let (status, answer, _) = send(&stack, walletless, session, ROSE, None).await;
    assert_error(status, &answer, 402, "PAYMENT_REQUIRED");
    let banned = joined_viewer(&stack, session, "banned").await;
    fund(&stack, banned, 1000).await;
    stack
        .sql()
        .await
        .execute(
            "INSERT INTO live_session_bans (session_id, user_id, banned_by) VALUES ($1, $2, $3)",
            &[&session, &banned, &host],
        )
        .await
        .unwrap();
    let (status, answer, _) = send(&stack, banned, session, STAR, None).await;
    assert_error(status, &answer, 403, "BANNED");
    let room = stack.session(host, session).await["roomName"]
        .as_str()
        .unwrap()
        .to_owned();
    let left = joined_viewer(&stack, session, "left").await;
    fund(&stack, left, 1000).await;
    stack.sim("leave", &room, left).await;
    crate::chat::wait_active(&stack, session, left, false).await;
    let (status, answer, _) = send(&stack, left, session, STAR, None).await;
    assert_error(status, &answer, 403, "FORBIDDEN");

    // Only while live: paused → 409; resumed → fine; ended → 409.
    let action = |a: &'static str| {
        let stack = &stack;
        async move {
            let (status, body) = stack
                .call(
                    Method::POST,
                    format!("{}/v1/sessions/{session}/{a}", stack.sessions),
                    host,
                    None,
                )
                .await;
            assert_eq!(status, 200, "{a}: {body}");
        }
    };
    action("pause").await;
    let (status, answer, _) = send(&stack, sender, session, ROSE, None).await;
    assert_error(status, &answer, 409, "INVALID_TRANSITION");
    for (user, coins) in [
        (sender, 4),
        (host, 1000),
        (stranger, 1000),
        (banned, 1000),
        (left, 1000),
    ] {
        assert_eq!(balance(&stack, user).await, Some(coins));
    }
    assert_eq!(balance(&stack, walletless).await, None);
    assert_eq!(money_rows(&stack, session).await, (0, 0, 0, 0, 0));

    action("resume").await;
    let (status, body, _) = send(&stack, sender, session, ROSE, None).await;
    assert_eq!(status, 201, "{body}");
    action("end").await;
    let (status, answer, _) = send(&stack, sender, session, ROSE, None).await;
    // Ended: the sender is no participant any more (presence closed with the session).
    assert_eq!(status.as_u16(), 403, "{answer}");
    assert_eq!(balance(&stack, sender).await, Some(3));
    assert_eq!(money_rows(&stack, session).await.0, 1);
}

#[tokio::test]
async fn a_session_that_is_not_live_refuses_gifts_from_its_participants() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    // Created (the host never joined): a participant row exists only through LiveKit, so
    // put the viewer there by hand.
    let session = stack.public_session(host).await;
    let viewer = testkit::profile(&stack.db, "viewer", false, None).await;
    fund(&stack, viewer, 100).await;
    stack
        .sql()
        .await
        .execute(
            "INSERT INTO live_participants (id, session_id, user_id, role, is_active) \
             VALUES ($1, $2, $3, 'viewer', true)",
            &[&Uuid::now_v7(), &session, &viewer],
        )
        .await
        .unwrap();
    let (status, answer, _) = send(&stack, viewer, session, STAR, Some("k1")).await;
    assert_error(status, &answer, 409, "INVALID_TRANSITION");
    assert_eq!(balance(&stack, viewer).await, Some(100));
    assert_eq!(money_rows(&stack, session).await, (0, 0, 0, 0, 0));
}

#[tokio::test]
async fn an_idempotency_key_charges_once_and_answers_the_first_response() {
    let stack = stack().await;
    let (host, session, sender) = live_with_sender(&stack, 100).await;

    let (status, first, replayed) = send(&stack, sender, session, STAR, Some("tap-1")).await;
    assert_eq!(status, 201, "{first}");
    assert!(!replayed);
    for _ in 0..3 {
        let (status, again, replayed) = send(&stack, sender, session, STAR, Some("tap-1")).await;
        assert_eq!(status, 201);
        assert!(replayed, "marked as a replay");
        assert_eq!(again, first, "the first response, byte for byte");
    }
    assert_eq!(balance(&stack, sender).await, Some(90));
    assert_eq!(balance(&stack, host).await, Some(7));
    assert_eq!(money_rows(&stack, session).await, (1, 2, 1, 1, 10));

    // The same key for another request: 409, nothing done.
    let (status, answer, _) = send(&stack, sender, session, HEART, Some("tap-1")).await;
    assert_error(status, &answer, 409, "CONFLICT");
    let (status, answer, _) = send(&stack, sender, Uuid::new_v4(), STAR, Some("tap-1")).await;
    assert_error(status, &answer, 409, "CONFLICT");
    // A new key is a new gift.
    let (status, body, _) = send(&stack, sender, session, STAR, Some("tap-2")).await;
    assert_eq!(status, 201, "{body}");
    assert_ne!(body["gift"]["id"], first["gift"]["id"]);
    assert_eq!(balance(&stack, sender).await, Some(80));

    // Keys are scoped to the user: another user's "tap-1" is theirs.
    let other = joined_viewer(&stack, session, "other").await;
    fund(&stack, other, 50).await;
    let (status, body, replayed) = send(&stack, other, session, STAR, Some("tap-1")).await;
    assert_eq!(status, 201, "{body}");
    assert!(!replayed);
    assert_eq!(body["gift"]["senderId"], json!(other));
    assert_eq!(balance(&stack, other).await, Some(40));

    // A refusal is the first response too: replayed, even once the balance would allow it.
    let (status, answer, _) = send(&stack, other, session, CROWN, Some("big")).await;
    assert_error(status, &answer, 402, "PAYMENT_REQUIRED");
    stack
        .sql()
        .await
        .execute(
            "UPDATE coin_wallets SET balance = balance + 100 WHERE user_id = $1",
            &[&other],
        )
        .await
        .unwrap();
    let (status, again, replayed) = send(&stack, other, session, CROWN, Some("big")).await;
    assert_eq!(status, 402);
    assert!(replayed);
    assert_eq!(again, answer);
    let (status, body, _) = send(&stack, other, session, CROWN, Some("big-2")).await;
    assert_eq!(status, 201, "{body}");

    // After 24 h a key is forgotten: the same key sends a new gift.
    stack
        .sql()
        .await
        .execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' \
             WHERE user_id = $1 AND key = 'tap-1'",
            &[&sender],
        )
        .await
        .unwrap();
    let (status, body, replayed) = send(&stack, sender, session, STAR, Some("tap-1")).await;
    assert_eq!(status, 201, "{body}");
    assert!(!replayed);
    assert_ne!(body["gift"]["id"], first["gift"]["id"]);
    assert_eq!(balance(&stack, sender).await, Some(70));
}

#[tokio::test]
async fn identical_requests_racing_charge_once() {
    let stack = stack().await;
    let (host, session, sender) = live_with_sender(&stack, 1000).await;
    let racers = (0..12).map(|_| send(&stack, sender, session, CROWN, Some("same-tap")));
    let answers = futures_util::future::join_all(racers).await;
    let first = &answers[0].1;
    for (status, body, _) in &answers {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body, first, "every racer gets the one answer");
    }
    assert_eq!(
        answers.iter().filter(|(_, _, replayed)| !replayed).count(),
        1,
        "one ran, the others waited for it"
    );
    assert_eq!(balance(&stack, sender).await, Some(900));
    assert_eq!(balance(&stack, host).await, Some(70));
    assert_eq!(money_rows(&stack, session).await, (1, 2, 1, 1, 100));
}
