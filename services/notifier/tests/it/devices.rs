//! `PUT /v1/devices`, `DELETE /v1/devices/{token}`: every route with each bad input.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{self, World, fcm_token, ios_token};

async fn assert_refused(w: &World, user: Uuid, body: Value, status: u16, code: &str) {
    let before = w.count("SELECT count(*) FROM push_devices").await;
    let (got, answer) = w.put_device(user, body.clone()).await;
    assert_eq!(got, status, "{body} → {answer}");
    assert_eq!(answer["success"], false, "{answer}");
    assert_eq!(answer["errorCode"], code, "{body} → {answer}");
    assert_eq!(
        w.count("SELECT count(*) FROM push_devices").await,
        before,
        "nothing stored for {body}"
    );
}

#[tokio::test]
async fn register_answers_the_device_and_is_idempotent() {
    let w = support::log_mode().await;
    let alice = w.user("alice").await;
    let token = ios_token();
    let (status, body) = w
        .put_device(
            alice,
            json!({"platform": "ios", "kind": "voip", "token": token}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let d = &body["device"];
    assert_eq!(d["platform"], "ios");
    assert_eq!(d["kind"], "voip");
    assert_eq!(d["token"], token.as_str());
    assert!(
        d["id"].as_str().is_some()
            && d["createdAt"].as_str().is_some()
            && d["updatedAt"].as_str().is_some(),
        "{d}"
    );
    let id = d["id"].clone();

    // The same token again: the same row, updated (here: its kind).
    let (status, again) = w
        .put_device(
            alice,
            json!({"platform": "ios", "kind": "standard", "token": token}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["device"]["id"], id);
    assert_eq!(again["device"]["kind"], "standard");
    assert_eq!(w.device_count(&token).await, 1);

    // Android standard tokens register too.
    let (status, body) = w
        .put_device(
            alice,
            json!({"platform": "android", "kind": "standard", "token": fcm_token()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_token_registered_by_another_user_moves_to_the_caller() {
    let w = support::log_mode().await;
    let (alice, bob) = (w.user("alice").await, w.user("bob").await);
    let token = fcm_token();
    w.device(alice, "android", "standard", &token).await;
    w.device(bob, "android", "standard", &token).await;
    let owner: Uuid = w
        .sql()
        .await
        .query_one(
            "SELECT user_id FROM push_devices WHERE token = $1",
            &[&token],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, bob);
    assert_eq!(w.device_count(&token).await, 1);
}

#[tokio::test]
async fn bad_bodies_are_refused_and_nothing_is_stored() {
    let w = support::log_mode().await;
    let alice = w.user("alice").await;
    let t = ios_token();
    let cases = [
        json!({"platform": "android", "kind": "voip", "token": fcm_token()}),
        json!({"platform": "windows", "kind": "standard", "token": t}),
        json!({"platform": "ios", "kind": "silent", "token": t}),
        json!({"platform": "ios", "kind": "voip"}),
        json!({"kind": "voip", "token": t}),
        json!({"platform": "ios", "token": t}),
        json!({"platform": "ios", "kind": "voip", "token": ""}),
        json!({"platform": "ios", "kind": "voip", "token": "x".repeat(4097)}),
        json!({"platform": "ios", "kind": "voip", "token": "has space"}),
        json!({"platform": "ios", "kind": "voip", "token": 42}),
        json!({"platform": "ios", "kind": "voip", "token": t, "extra": 1}),
        json!(["ios", "voip", t]),
        json!(null),
    ];
    for body in cases {
        assert_refused(&w, alice, body, 422, "VALIDATION_ERROR").await;
    }
    // Malformed JSON.
    let res = w
        .http
        .put(w.url("/v1/devices"))
        .bearer_auth(testkit::token_for(alice))
        .header("content-type", "application/json")
        .body("{\"platform\": \"ios\",")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errorCode"], "VALIDATION_ERROR");
    // 4096 characters is the longest accepted.
    let long = "a".repeat(4096);
    w.device(alice, "android", "standard", &long).await;
    assert_eq!(w.count("SELECT count(*) FROM push_devices").await, 1);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let w = support::log_mode().await;
    let alice = w.user("alice").await;
    let body = json!({"platform": "ios", "kind": "voip", "token": "a".repeat(70 * 1024)});
    assert_refused(&w, alice, body, 413, "PAYLOAD_TOO_LARGE").await;
}

#[tokio::test]
async fn bad_or_missing_tokens_and_unknown_users_are_401() {
    let w = support::log_mode().await;
    let body = json!({"platform": "ios", "kind": "voip", "token": ios_token()});
    let send = |auth: Option<String>, method: reqwest::Method, path: String| {
        let mut req = w.http.request(method, w.url(&path)).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let nobody = Uuid::new_v4();
    let forged = auth::mint(
        b"another-secret-with-enough-bytes-0000",
        w.user("x").await,
        3600,
    );
    let expired = auth::mint(testkit::JWT_SECRET.as_bytes(), w.user("y").await, -3600);
    let auths = [
        None,
        Some("Bearer".to_owned()),
        Some("Bearer not-a-jwt".to_owned()),
        Some(format!("Bearer {forged}")),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {}", testkit::token_for(nobody))),
    ];
    for auth in auths {
        for (method, path) in [
            (reqwest::Method::PUT, "/v1/devices".to_owned()),
            (
                reqwest::Method::DELETE,
                format!("/v1/devices/{}", ios_token()),
            ),
        ] {
            let res = send(auth.clone(), method.clone(), path.clone())
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 401, "{method} {path} with {auth:?}");
            let answer: Value = res.json().await.unwrap();
            assert_eq!(answer["errorCode"], "UNAUTHORIZED");
        }
    }
    assert_eq!(w.count("SELECT count(*) FROM push_devices").await, 0);
}

#[tokio::test]
async fn delete_is_for_the_owner_only() {
    let w = support::log_mode().await;
    let (alice, mallory) = (w.user("alice").await, w.user("mallory").await);
    let token = fcm_token();
    w.device(alice, "android", "standard", &token).await;
    let delete = |user: Uuid, token: String| {
        w.http
            .delete(w.url(&format!("/v1/devices/{token}")))
            .bearer_auth(testkit::token_for(user))
            .send()
    };
    // Someone else's token and an unknown one look the same.
    for (user, t) in [(mallory, token.clone()), (alice, fcm_token())] {
        let res = delete(user, t).await.unwrap();
        assert_eq!(res.status().as_u16(), 404);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["errorCode"], "NOT_FOUND");
    }
    assert_eq!(w.device_count(&token).await, 1);
    let res = delete(alice, token.clone()).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["device"]["token"], token.as_str());
    assert_eq!(w.device_count(&token).await, 0);
    // Gone: a second delete is 404.
    assert_eq!(delete(alice, token).await.unwrap().status().as_u16(), 404);
}

/// A NUL in the path (`%00`) reached the query and failed it with a 500 (PostgreSQL's text
/// cannot hold one). What PUT would refuse as a token, DELETE refuses the same way now.
#[tokio::test]
async fn delete_refuses_what_cannot_be_a_token() {
    let w = support::log_mode().await;
    let alice = w.user("alice").await;
    let token = fcm_token();
    w.device(alice, "android", "standard", &token).await;
    let too_long = "a".repeat(notifier::devices::MAX_TOKEN_CHARS + 1);
    for path in [
        format!("{token}%00"),
        "a%00b".to_owned(),
        format!("{token}%20x"),
        "tab%09here".to_owned(),
        too_long,
    ] {
        let res = w
            .http
            .delete(w.url(&format!("/v1/devices/{path}")))
            .bearer_auth(testkit::token_for(alice))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 422, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["errorCode"], "VALIDATION_ERROR", "{path}: {body}");
    }
    assert_eq!(w.device_count(&token).await, 1);
}
