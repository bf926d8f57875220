//! The Twirp surface over JSON, and its errors.

use livekit_api::access_token::VideoGrants;
use serde_json::{Value, json};

use crate::support::*;

async fn call(t: &TestSim, method: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = t
        .http
        .post(t.url(&format!("/twirp/livekit.RoomService/{method}")))
        .json(&body);
    if let Some(tok) = token {
        req = req.bearer_auth(tok);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn json_twirp_accepts_snake_and_camel_case() {
    let t = TestSim::start().await;
    let creator = admin_token(VideoGrants {
        room_create: true,
        room_list: true,
        ..Default::default()
    });
    let (s, room) = call(
        &t,
        "CreateRoom",
        Some(&creator),
        json!({"name": "j1", "empty_timeout": 42}),
    )
    .await;
    assert_eq!(s, 200, "{room}");
    assert_eq!(room["name"], "j1");
    assert_eq!(room["emptyTimeout"], 42);
    assert!(room["creationTime"].is_string());
    let (s, room) = call(
        &t,
        "CreateRoom",
        Some(&creator),
        json!({"name": "j2", "departureTimeout": 7, "unknownField": 1}),
    )
    .await;
    assert_eq!(s, 200, "{room}");
    assert_eq!(room["departureTimeout"], 7);
    let (s, list) = call(&t, "ListRooms", Some(&creator), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(list["rooms"].as_array().unwrap().len(), 2);
    let (s, _) = call(&t, "DeleteRoom", Some(&creator), json!({"room": "j1"})).await;
    assert_eq!(s, 200);
    let (s, err) = call(&t, "DeleteRoom", Some(&creator), json!({"room": "j1"})).await;
    assert_eq!((s, &err["code"]), (404, &json!("not_found")));
    t.stop().await;
}

#[tokio::test]
async fn twirp_errors_have_twirp_shape_and_status() {
    let t = TestSim::start().await;
    let (s, err) = call(&t, "ListRooms", None, json!({})).await;
    assert_eq!(s, 401);
    assert_eq!(err["code"], "unauthenticated");
    assert_eq!(err["meta"], json!({}));
    assert!(err["msg"].is_string());

    let (s, err) = call(&t, "ListRooms", Some("not-a-jwt"), json!({})).await;
    assert_eq!((s, &err["code"]), (401, &json!("unauthenticated")));

    let joiner = token("alice", &grant("r"));
    let (s, err) = call(&t, "ListParticipants", Some(&joiner), json!({"room": "r"})).await;
    assert_eq!((s, &err["code"]), (401, &json!("unauthenticated")));

    let admin = admin_token(VideoGrants {
        room_admin: true,
        room: "r".into(),
        ..Default::default()
    });
    let (s, ok) = call(&t, "ListParticipants", Some(&admin), json!({"room": "r"})).await;
    assert_eq!(s, 200);
    assert_eq!(ok, json!({}), "an empty list is omitted in protojson");
    let (s, err) = call(&t, "SendData", Some(&admin), json!({"room": "r"})).await;
    assert_eq!((s, &err["code"]), (501, &json!("unimplemented")));
    let (s, err) = call(&t, "Teleport", Some(&admin), json!({})).await;
    assert_eq!((s, &err["code"]), (404, &json!("bad_route")));
    let (s, err) = call(&t, "GetParticipant", Some(&admin), json!({"room": 5})).await;
    assert_eq!((s, &err["code"]), (400, &json!("malformed")));

    t.post(
        "/sim/faults",
        json!({"failNextApiCalls": 1, "code": "unavailable"}),
    )
    .await;
    let (s, err) = call(&t, "ListParticipants", Some(&admin), json!({"room": "r"})).await;
    assert_eq!((s, &err["code"]), (503, &json!("unavailable")));
    t.stop().await;
}
