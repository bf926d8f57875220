use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn bad_tokens_get_401_and_no_event() {
    let t = TestSim::start().await;
    let video = json!({"roomJoin": true, "room": "room-x"});
    let bad = [
        (
            "wrong secret",
            raw_jwt(
                "not-the-secret",
                json!({"iss": KEY, "sub": "u", "exp": now() + 600, "video": video}),
            ),
        ),
        (
            "expired",
            raw_jwt(
                SECRET,
                json!({"iss": KEY, "sub": "u", "exp": now() - 120, "video": video}),
            ),
        ),
        (
            "no roomJoin",
            raw_jwt(
                SECRET,
                json!({"iss": KEY, "sub": "u", "exp": now() + 600, "video": {"room": "room-x"}}),
            ),
        ),
        (
            "wrong key",
            raw_jwt(
                SECRET,
                json!({"iss": "OtherKey", "sub": "u", "exp": now() + 600, "video": video}),
            ),
        ),
        (
            "no identity",
            raw_jwt(
                SECRET,
                json!({"iss": KEY, "exp": now() + 600, "video": video}),
            ),
        ),
        (
            "not yet valid",
            raw_jwt(
                SECRET,
                json!({"iss": KEY, "sub": "u", "nbf": now() + 300, "exp": now() + 600, "video": video}),
            ),
        ),
        ("garbage", "abc.def.ghi".to_owned()),
    ];
    for (why, tok) in bad {
        let (status, body) = t.post("/sim/join", json!({ "token": tok })).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{why}");
        assert_eq!(body["meta"], json!({}));
    }
    t.settle().await;
    assert!(t.hits().is_empty());
    assert_eq!(t.get("/sim/rooms").await, json!([]));
    t.stop().await;
}

#[tokio::test]
async fn clock_leeway_is_one_minute() {
    let t = TestSim::start().await;
    let video = json!({"roomJoin": true, "room": "room-l"});
    let tok = raw_jwt(
        SECRET,
        json!({"iss": KEY, "sub": "late", "exp": now() - 30, "video": video}),
    );
    t.join(&tok).await;
    t.stop().await;
}
