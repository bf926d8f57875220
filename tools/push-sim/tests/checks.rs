//! The stand-ins refuse what the real providers refuse.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use push_sim::PushSim;
use serde_json::{Value, json};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn plain() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn h2() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

fn apns_jwt(pem: &str, kid: &str, team: &str, iat: u64) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        &json!({"iss": team, "iat": iat}),
        &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[tokio::test]
async fn apns_checks_protocol_auth_topic_priority_and_payload() {
    let sim = PushSim::start().await.unwrap();
    let c = sim.apns.credentials().clone();
    let good = apns_jwt(&c.keys.private_pem, &c.key_id, &c.team_id, now());
    let other_key = push_sim::keys::generate_es256().unwrap();
    let url = format!("{}/3/device/{TOKEN}", sim.apns.url());
    let voip_topic = format!("{}.voip", c.topic);
    let send = |jwt: String, topic: String, push_type: &str, priority: &str, body: Value| {
        h2().post(&url)
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", topic)
            .header("apns-push-type", push_type)
            .header("apns-priority", priority)
            .json(&body)
            .send()
    };
    let reason = |res: reqwest::Response| async move {
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        (status, body["reason"].as_str().unwrap_or("").to_owned())
    };

    // HTTP/1.1 is refused.
    let res = plain()
        .post(&url)
        .json(&json!({"aps": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 505);

    let cases: Vec<(String, String, &str, &str, Value, u16, &str)> = vec![
        (
            apns_jwt(&other_key.private_pem, &c.key_id, &c.team_id, now()),
            voip_topic.clone(),
            "voip",
            "10",
            json!({}),
            403,
            "InvalidProviderToken",
        ),
        (
            apns_jwt(&c.keys.private_pem, "OTHERKEY", &c.team_id, now()),
            voip_topic.clone(),
            "voip",
            "10",
            json!({}),
            403,
            "InvalidProviderToken",
        ),
        (
            apns_jwt(&c.keys.private_pem, &c.key_id, "OTHERTEAM", now()),
            voip_topic.clone(),
            "voip",
            "10",
            json!({}),
            403,
            "InvalidProviderToken",
        ),
        (
            apns_jwt(&c.keys.private_pem, &c.key_id, &c.team_id, now() - 7200),
            voip_topic.clone(),
            "voip",
            "10",
            json!({}),
            403,
            "ExpiredProviderToken",
        ),
        (
            good.clone(),
            c.topic.clone(),
            "voip",
            "10",
            json!({}),
            400,
            "TopicDisallowed",
        ),
        (
            good.clone(),
            voip_topic.clone(),
            "alert",
            "10",
            json!({"aps": {"alert": "x"}}),
            400,
            "TopicDisallowed",
        ),
        (
            good.clone(),
            "com.someone.else".into(),
            "alert",
            "10",
            json!({"aps": {"alert": "x"}}),
            400,
            "BadTopic",
        ),
        (
            good.clone(),
            c.topic.clone(),
            "nonsense",
            "10",
            json!({}),
            400,
            "InvalidPushType",
        ),
        (
            good.clone(),
            c.topic.clone(),
            "alert",
            "7",
            json!({"aps": {"alert": "x"}}),
            400,
            "BadPriority",
        ),
        (
            good.clone(),
            c.topic.clone(),
            "background",
            "10",
            json!({"aps": {"content-available": 1}}),
            400,
            "BadPriority",
        ),
        (
            good.clone(),
            c.topic.clone(),
            "alert",
            "10",
            json!({"callId": "x"}),
            400,
            "PayloadEmpty",
        ),
    ];
    for (jwt, topic, push_type, priority, body, status, why) in cases {
        let got = reason(
            send(jwt, topic.clone(), push_type, priority, body.clone())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            got,
            (status, why.to_owned()),
            "{topic} {push_type} {priority} {body}"
        );
    }
    assert!(sim.apns.received().is_empty());

    // A good VoIP push is accepted and recorded; then faults.
    let res = send(
        good.clone(),
        voip_topic.clone(),
        "voip",
        "10",
        json!({"callId": "c1"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers().contains_key("apns-id"));
    assert_eq!(sim.apns.received()[0].payload["callId"], "c1");
    sim.apns.faults().fail_next(1, 503);
    assert_eq!(
        reason(
            send(good.clone(), voip_topic.clone(), "voip", "10", json!({}))
                .await
                .unwrap()
        )
        .await,
        (503, "ServiceUnavailable".into())
    );
    sim.apns.faults().unregister(TOKEN);
    assert_eq!(
        reason(
            send(good.clone(), voip_topic.clone(), "voip", "10", json!({}))
                .await
                .unwrap()
        )
        .await,
        (410, "Unregistered".into())
    );
    let bad_token = h2()
        .post(format!("{}/3/device/xyz", sim.apns.url()))
        .header("authorization", format!("bearer {good}"))
        .header("apns-topic", &voip_topic)
        .header("apns-push-type", "voip")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(reason(bad_token).await, (400, "BadDeviceToken".into()));

    // The control API answers over HTTP/1.1.
    let listed: Value = plain()
        .get(format!("{}/sim/received", sim.apns.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn fcm_checks_the_oauth_grant_the_bearer_and_the_message() {
    let sim = PushSim::start().await.unwrap();
    let sa = sim.fcm.credentials().clone();
    let assertion = |pem: &str, kid: &str, aud: &str, scope: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let t = now();
        jsonwebtoken::encode(
            &header,
            &json!({"iss": sa.client_email, "scope": scope, "aud": aud, "iat": t, "exp": t + 3600}),
            &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let grant = |jwt: String| {
        h2().post(&sa.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}"
            ))
            .send()
    };
    let pem = &sa.keys.private_pem;
    for bad in [
        assertion(pem, "other-kid", &sa.token_uri, push_sim::fcm::FCM_SCOPE),
        assertion(
            pem,
            &sa.private_key_id,
            "https://elsewhere/token",
            push_sim::fcm::FCM_SCOPE,
        ),
        assertion(
            pem,
            &sa.private_key_id,
            &sa.token_uri,
            "https://www.googleapis.com/auth/drive",
        ),
    ] {
        assert_eq!(grant(bad).await.unwrap().status().as_u16(), 400);
    }
    let ok: Value = grant(assertion(
        pem,
        &sa.private_key_id,
        &sa.token_uri,
        push_sim::fcm::FCM_SCOPE,
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let access = ok["access_token"].as_str().unwrap().to_owned();

    let send_url = format!(
        "{}/v1/projects/{}/messages:send",
        sim.fcm.url(),
        sa.project_id
    );
    let token = "fcm_token_0123456789abcdef";
    let send = |bearer: &str, url: &str, body: Value| {
        h2().post(url).bearer_auth(bearer).json(&body).send()
    };
    let call = json!({"message": {"token": token, "data": {"type": "incoming_call", "callId": "c"}, "android": {"priority": "high", "ttl": "30s"}}});
    assert_eq!(
        send("wrong", &send_url, call.clone())
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let other_project = format!("{}/v1/projects/other/messages:send", sim.fcm.url());
    assert_eq!(
        send(&access, &other_project, call.clone())
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    for bad in [
        json!({"token": token}),
        json!({"message": {"token": token, "unknown": 1}}),
        json!({"message": {"data": {"a": "b"}}}),
        json!({"message": {"token": token, "data": {"n": 1}}}),
        json!({"message": {"token": token, "android": {"priority": "urgent"}}}),
        json!({"message": {"token": token, "android": {"ttl": "30"}}}),
        json!({"message": {"token": token, "data": {"type": "incoming_call"}, "android": {"priority": "normal"}}}),
        json!({"message": {"token": "bad token!", "data": {"a": "b"}}}),
    ] {
        let res = send(&access, &send_url, bad.clone()).await.unwrap();
        assert_eq!(res.status().as_u16(), 400, "{bad}");
    }
    assert!(sim.fcm.received().is_empty());
    assert_eq!(
        send(&access, &send_url, call.clone())
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let got = sim.fcm.received_for(token);
    assert_eq!(got.len(), 1);
    assert!(got[0].data_only);
    sim.fcm.faults().unregister(token);
    let res = send(&access, &send_url, call).await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["details"][0]["errorCode"], "UNREGISTERED");
    // HTTP/1.1 is refused.
    let res = plain()
        .post(&send_url)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 505);
    sim.stop().await;
}
