//! The money test: 1,000 concurrent gifts from 10 senders with random balances, through
//! the real HTTP route, some requests sent twice at once with the same key and every
//! failed one retried with its key. Afterwards: no balance below zero, every balance is the
//! sum of its ledger, and each key charged at most once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use uuid::Uuid;

use crate::chat::joined_viewer;
use crate::gifts::{CROWN, HEART, ROCKET, ROSE, STAR, fund, try_send};
use crate::stack;

const SENDERS: usize = 10;
const GIFTS: usize = 1000;

/// Sends until the service gives a definite answer (not 5xx), always with the same key, as
/// a client retrying a 500, a 408 or a dropped connection does. With 1,000 requests at once on a pool of 4 connections,
/// many wait longer than the pool's 5 s and get a 500: those retries are part of the test.
async fn send_with_retries(
    stack: &crate::Stack,
    user: Uuid,
    session: Uuid,
    gift: &str,
    key: &str,
    retries: &AtomicUsize,
) -> (u16, Value) {
    for attempt in 0.. {
        let outcome = match try_send(stack, user, session, gift, Some(key)).await {
            // 5xx (a pool timeout under this load) and 408 (actix gave up reading a
            // request head on the starved machine) are worth a retry; the rest is an answer.
            Ok((status, body, _))
                if !status.is_server_error() && status != reqwest::StatusCode::REQUEST_TIMEOUT =>
            {
                return (status.as_u16(), body);
            }
            Ok((status, body, _)) => format!("{status} {body}"),
            // A connection the server closed under the load.
            Err(e) => format!("transport error: {e}"),
        };
        retries.fetch_add(1, Ordering::Relaxed);
        assert!(attempt < 50, "{key}: still {outcome} after 50 attempts");
        // Exponential backoff with jitter, as a well-behaved client retries.
        let backoff = 50u64.saturating_mul(1 << attempt.min(5)).min(1500);
        let jitter = rand::rng().random_range(0..50);
        tokio::time::sleep(Duration::from_millis(backoff + jitter)).await;
    }
    unreachable!()
}

#[tokio::test]
async fn a_thousand_concurrent_gifts_keep_the_books_exact() {
    let stack = stack().await;
    let host = testkit::profile(&stack.db, "host", true, None).await;
    let session = stack.live_session(host, "video_live").await;
    let mut rng = rand::rng();
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let user = joined_viewer(&stack, session, &format!("sender{i}")).await;
        // Random balances, some too small for most gifts, one possibly empty.
        let coins: i64 = rng.random_range(0..=3000);
        fund(&stack, user, coins).await;
        senders.push(user);
    }
    let catalogue = [
        (ROSE, 1i64),
        (HEART, 5),
        (STAR, 10),
        (CROWN, 100),
        (ROCKET, 500),
    ];
    let price: HashMap<&str, i64> = catalogue.iter().copied().collect();

    // Each gift has its own key; one in five is sent twice at once (a double tap or a
    // retry racing the original).
    let mut plan = Vec::new();
    for n in 0..GIFTS {
        let sender = senders[rng.random_range(0..SENDERS)];
        let gift = catalogue[rng.random_range(0..catalogue.len())].0;
        let key = format!("gift-{n}");
        let copies = if rng.random_bool(0.2) { 2 } else { 1 };
        for _ in 0..copies {
            plan.push((sender, gift, key.clone()));
        }
    }
    let retries = AtomicUsize::new(0);
    let requests = plan.iter().map(|(sender, gift, key)| {
        let (stack, retries) = (&stack, &retries);
        async move {
            let (status, body) =
                send_with_retries(stack, *sender, session, gift, key, retries).await;
            (key.clone(), *sender, *gift, status, body)
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    eprintln!(
        "{} requests for {GIFTS} keys, {} attempts retried",
        plan.len(),
        retries.load(Ordering::Relaxed)
    );

    // Every copy of a key got the same answer; only 201 and 402 were answered.
    let mut by_key: HashMap<String, (Uuid, &str, u16, Value)> = HashMap::new();
    for (key, sender, gift, status, body) in answers {
        assert!(status == 201 || status == 402, "{key}: {status} {body}");
        match by_key.get(&key) {
            Some((_, _, s, b)) => {
                assert_eq!((*s, b), (status, &body), "{key}: two different answers")
            }
            None => {
                by_key.insert(key, (sender, gift, status, body));
            }
        }
    }
    assert_eq!(by_key.len(), GIFTS);

    let sql = stack.sql().await;
    // No balance below zero (the CHECK would have refused it; the guard is what answered 402).
    let negative: i64 = sql
        .query_one("SELECT count(*) FROM coin_wallets WHERE balance < 0", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(negative, 0);
    // Every wallet is exactly the sum of its ledger, and every ledger has its wallet.
    let mismatched = sql
        .query(
            "SELECT coalesce(w.user_id, t.user_id), w.balance, t.total \
             FROM coin_wallets w \
             FULL JOIN (SELECT user_id, sum(amount)::bigint AS total FROM coin_transactions \
                        GROUP BY user_id) t ON t.user_id = w.user_id \
             WHERE w.balance IS DISTINCT FROM coalesce(t.total, 0)",
            &[],
        )
        .await
        .unwrap();
    assert!(
        mismatched.is_empty(),
        "wallets that are not the sum of their ledger: {:?}",
        mismatched
            .iter()
            .map(|r| (
                r.get::<_, Uuid>(0),
                r.get::<_, Option<i64>>(1),
                r.get::<_, Option<i64>>(2)
            ))
            .collect::<Vec<_>>()
    );

    // Nothing charged twice: one gift row per key answered 201, the one in its answer,
    // with exactly its two ledger rows.
    let sent: Vec<_> = by_key.values().filter(|(_, _, s, _)| *s == 201).collect();
    let gift_rows: i64 = sql
        .query_one("SELECT count(*) FROM live_gifts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(gift_rows, sent.len() as i64, "one gift per key");
    let stored: HashMap<Uuid, (Uuid, i64)> = sql
        .query("SELECT id, sender_id, coins FROM live_gifts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let mut spent: HashMap<Uuid, i64> = HashMap::new();
    let mut host_total = 0;
    for (sender, gift, _, body) in &sent {
        let id: Uuid = body["gift"]["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(stored.get(&id), Some(&(*sender, price[gift])), "{body}");
        *spent.entry(*sender).or_default() += price[gift];
        host_total += body["gift"]["hostShare"].as_i64().unwrap();
    }
    let per_gift_ledger = sql
        .query(
            "SELECT g.id, count(t.id) FILTER (WHERE t.kind = 'gift_sent' AND t.amount = -g.coins \
                                              AND t.user_id = g.sender_id), \
                          count(t.id) FILTER (WHERE t.kind = 'gift_received' \
                                              AND t.amount = g.host_share AND t.user_id = g.recipient_id), \
                          count(t.id), g.host_share \
             FROM live_gifts g LEFT JOIN coin_transactions t ON t.ref_id = g.id GROUP BY g.id",
            &[],
        )
        .await
        .unwrap();
    for r in &per_gift_ledger {
        let (sent_rows, received_rows, all, share): (i64, i64, i64, i64) =
            (r.get(1), r.get(2), r.get(3), r.get(4));
        let expected_received = i64::from(share > 0);
        assert_eq!(
            (sent_rows, received_rows, all),
            (1, expected_received, 1 + expected_received),
            "ledger of gift {}",
            r.get::<_, Uuid>(0)
        );
    }
    // Each sender paid exactly the gifts it was answered 201 for; a 402 only came when the
    // balance left could not pay.
    for sender in &senders {
        let row = sql
            .query_one(
                "SELECT (SELECT amount FROM coin_transactions WHERE user_id = $1 AND kind = 'top_up'), \
                        balance FROM coin_wallets WHERE user_id = $1",
                &[sender],
            )
            .await
            .unwrap();
        let initial: Option<i64> = row.get(0);
        let balance: i64 = row.get(1);
        assert_eq!(
            initial.unwrap_or(0) - spent.get(sender).copied().unwrap_or(0),
            balance,
            "sender {sender}"
        );
        let cheapest_refused = by_key
            .values()
            .filter(|(s, _, st, _)| s == sender && *st == 402)
            .map(|(_, g, _, _)| price[g])
            .min();
        if let Some(p) = cheapest_refused {
            assert!(
                balance < p,
                "refused a {p}-coin gift but {balance} are left"
            );
        }
    }
    let host_balance: i64 = sql
        .query_one(
            "SELECT balance FROM coin_wallets WHERE user_id = $1",
            &[&host],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(host_balance, host_total);
    let s = stack.session(host, session).await;
    assert_eq!(s["totalGiftsReceived"].as_i64(), Some(sent.len() as i64));
    assert_eq!(
        s["totalGiftCoins"].as_i64(),
        Some(sent.iter().map(|(_, g, _, _)| price[g]).sum::<i64>())
    );
    let events: i64 = sql
        .query_one(
            "SELECT count(*) FROM outbox WHERE subject LIKE '%session.gift_sent'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, sent.len() as i64, "one event per gift");
}
