//! The end-to-end suite through the real nginx gateway: every client request goes to nginx
//! (rendered from `deploy/gateway/ipelya.conf.template`), and so do livekit-sim's webhooks;
//! only the simulated participants talk to livekit-sim directly, as apps talk to LiveKit.
//! Every service is its own process, on the machine's PostgreSQL and NATS.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system::gateway::stack_behind_gateway;
use system::{Gateway, GatewayConfig, Stack, StackConfig, Svc};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// Connections per service: PostgreSQL's 100 are shared by every stack running at once.
const DB_POOL_SIZE: &str = "2";

/// An answer: status, X-Request-Id, Retry-After and the JSON body.
struct Answer {
    status: StatusCode,
    request_id: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

/// A client of the gateway, as the app is.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn of(gateway: &Gateway) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: gateway.url(),
        }
    }

    fn request(&self, method: Method, path: &str, user: Option<Uuid>) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match user {
            Some(u) => req.bearer_auth(testkit::token_for(u)),
            None => req,
        }
    }

    async fn send(req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.expect("the gateway answers");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (request_id, retry_after) = (header("x-request-id"), header("retry-after"));
        let status = res.status();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            request_id,
            retry_after,
            body,
        }
    }

    async fn call(&self, method: Method, path: &str, user: Uuid, body: Option<Value>) -> Answer {
        let mut req = self.request(method, path, Some(user));
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::send(req).await
    }

    /// A call that must succeed; its body.
    async fn ok(&self, method: Method, path: &str, user: Uuid, body: Option<Value>) -> Value {
        let a = self.call(method.clone(), path, user, body).await;
        assert!(
            a.status.is_success() && a.body["success"] == json!(true),
            "{method} {path}: {} {}",
            a.status,
            a.body
        );
        a.body
    }

    async fn session(&self, user: Uuid, id: &str) -> Value {
        self.ok(Method::GET, &format!("/v1/sessions/{id}"), user, None)
            .await["session"]
            .clone()
    }

    async fn wait_session(&self, user: Uuid, id: &str, what: &str, done: impl Fn(&Value) -> bool) {
        testkit::eventually(WAIT, what, || async {
            let s = self.session(user, id).await;
            done(&s).then_some(())
        })
        .await;
    }

    async fn livekit_token(&self, user: Uuid, body: Value) -> Value {
        self.ok(Method::POST, "/v1/tokens", user, Some(body)).await
    }
}

#[track_caller]
fn assert_envelope(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    assert_eq!(a.body["success"], json!(false), "{}", a.body);
    assert_eq!(a.body["errorCode"], json!(code), "{}", a.body);
    assert!(a.body["error"].is_string(), "{}", a.body);
}

/// livekit-sim's control API (the participants' side, not through the gateway).
async fn sim(stack: &Stack, action: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{}/sim/{action}", stack.url(Svc::LivekitSim)))
        .json(&body)
        .send()
        .await
        .expect("livekit-sim answers");
    assert!(res.status().is_success(), "sim {action}: {}", res.status());
    res.json().await.expect("sim body")
}

async fn room_identities(stack: &Stack, room: &str) -> Vec<String> {
    let rooms: Value = reqwest::get(format!("{}/sim/rooms", stack.url(Svc::LivekitSim)))
        .await
        .expect("sim rooms")
        .json()
        .await
        .expect("sim rooms body");
    let list = rooms
        .get("rooms")
        .and_then(Value::as_array)
        .or_else(|| rooms.as_array())
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter(|r| r["name"] == json!(room))
        .flat_map(|r| r["participants"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["identity"].as_str().map(str::to_owned))
        .collect()
}

async fn user(db: &testkit::TestDb, name: &str, creator: bool, role: Option<&str>) -> Uuid {
    let name = format!("{name}_{}", &Uuid::new_v4().simple().to_string()[..8]);
    testkit::profile(db, &name, creator, role).await
}

async fn coins(sql: &tokio_postgres::Client, user: Uuid) -> i64 {
    sql.query_opt(
        "SELECT balance FROM coin_wallets WHERE user_id = $1",
        &[&user],
    )
    .await
    .expect("wallet")
    .map_or(0, |r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_broadcast_with_chat_gift_kick_and_ban_ends_after_the_host_leaves() {
    let (config, db) = StackConfig::fresh().await.expect("config");
    let config = config
        .with_env("DB_POOL_SIZE", DB_POOL_SIZE)
        .with_env("HOST_GRACE_SECONDS", "1");
    let (stack, gateway) = stack_behind_gateway(config, GatewayConfig::new().unwrap())
        .await
        .expect("stack and gateway");
    let app = Client::of(&gateway);
    let creator = user(&db, "creator", true, None).await;
    let fan = user(&db, "fan", false, None).await;
    let lurker = user(&db, "lurker", false, None).await;
    // one connection for the test's own reads
    let sql = db.sql().await;
    sql.execute(
        "INSERT INTO coin_wallets (user_id, balance) VALUES ($1, 1000)",
        &[&fan],
    )
    .await
    .unwrap();

    let created = app
        .call(
            Method::POST,
            "/v1/sessions",
            creator,
            Some(json!({"sessionType": "video_live", "title": "Through nginx", "accessType": "public"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["session"]["id"].as_str().unwrap().to_owned();
    let room = created.body["session"]["roomName"]
        .as_str()
        .unwrap()
        .to_owned();

    let host = app.livekit_token(creator, json!({"sessionId": id})).await;
    assert_eq!(host["role"], json!("host"));
    sim(&stack, "join", json!({"token": host["token"]})).await;
    app.wait_session(creator, &id, "live", |s| s["status"] == json!("live"))
        .await;
    for viewer in [fan, lurker] {
        let t = app.livekit_token(viewer, json!({"sessionId": id})).await;
        assert_eq!(t["role"], json!("viewer"));
        sim(&stack, "join", json!({"token": t["token"]})).await;
    }
    app.wait_session(fan, &id, "two viewers", |s| s["viewerCount"] == json!(2))
        .await;

    // Chat and a gift, through the gateway.
    let posted = app
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            fan,
            Some(json!({"body": "hello from behind nginx"})),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);
    let listed = app
        .ok(
            Method::GET,
            &format!("/v1/sessions/{id}/messages"),
            lurker,
            None,
        )
        .await;
    assert!(
        listed.to_string().contains("hello from behind nginx"),
        "{listed}"
    );
    let catalogue = app.ok(Method::GET, "/v1/gifts", fan, None).await;
    let gift = &catalogue["gifts"][0];
    let price = gift["coinPrice"].as_i64().expect("a priced gift");
    let sent = Client::send(
        app.request(Method::POST, &format!("/v1/sessions/{id}/gifts"), Some(fan))
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({"giftId": gift["id"]})),
    )
    .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
    assert_eq!(coins(&sql, fan).await, 1000 - price);
    assert_eq!(
        coins(&sql, creator).await,
        sent.body["gift"]["hostShare"].as_i64().unwrap()
    );
    app.wait_session(creator, &id, "the gift counted", |s| {
        s["totalGiftsReceived"] == json!(1) && s["totalMessages"] == json!(1)
    })
    .await;

    // The host kicks the lurker (out of the room) and bans the fan (no new token).
    app.ok(
        Method::POST,
        &format!("/v1/moderation/sessions/{id}/kick"),
        creator,
        Some(json!({"userId": lurker})),
    )
    .await;
    testkit::eventually(WAIT, "the lurker out of the room", || async {
        let ids = room_identities(&stack, &room).await;
        (!ids.contains(&lurker.to_string()) && ids.contains(&creator.to_string())).then_some(())
    })
    .await;
    let banned = app
        .call(
            Method::POST,
            &format!("/v1/moderation/sessions/{id}/bans"),
            creator,
            Some(json!({"userId": fan, "reason": "spam"})),
        )
        .await;
    assert_eq!(banned.status, StatusCode::CREATED, "{}", banned.body);
    let refused = app
        .call(
            Method::POST,
            "/v1/tokens",
            fan,
            Some(json!({"sessionId": id})),
        )
        .await;
    assert_envelope(&refused, 403, "BANNED");

    // The host leaves: host_disconnected, then ended once the grace (1 s) is over.
    sim(
        &stack,
        "leave",
        json!({"room": room, "identity": creator.to_string()}),
    )
    .await;
    app.wait_session(creator, &id, "the end after the grace", |s| {
        s["status"] == json!("ended")
    })
    .await;
    let s = app.session(creator, &id).await;
    assert_eq!(s["endReason"], json!("host_disconnected"), "{s}");

    // LiveKit's webhooks came through the gateway too, and were accepted.
    let hooks: Vec<Value> = gateway
        .access_log()
        .into_iter()
        .filter(|e| {
            e["request"]
                .as_str()
                .unwrap_or("")
                .starts_with("POST /webhooks/livekit ")
        })
        .collect();
    assert!(hooks.len() >= 4, "webhooks through the gateway: {hooks:?}");
    assert!(hooks.iter().all(|e| e["status"] == json!(200)), "{hooks:?}");
}

/// Reads the SSE stream until `want` appears in what has arrived; returns all of it.
async fn read_until(stream: &mut reqwest::Response, seen: &mut String, want: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.contains(want) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no `{want}` on the event stream; got:\n{seen}"))
            .expect("the stream stays open")
            .expect("the stream does not end");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_call_rings_on_the_callees_event_stream_goes_live_and_ends() {
    let (config, db) = StackConfig::fresh().await.expect("config");
    let config = config.with_env("DB_POOL_SIZE", DB_POOL_SIZE);
    let (stack, gateway) = stack_behind_gateway(config, GatewayConfig::new().unwrap())
        .await
        .expect("stack and gateway");
    let app = Client::of(&gateway);
    let caller = user(&db, "caller", false, None).await;
    let callee = user(&db, "callee", false, None).await;

    let device = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    app.ok(
        Method::PUT,
        "/v1/devices",
        callee,
        Some(json!({"platform": "ios", "kind": "voip", "token": device})),
    )
    .await;
    // The callee's event stream, through the gateway (unbuffered there).
    let mut events = app
        .request(Method::GET, "/v1/events", Some(callee))
        .send()
        .await
        .expect("event stream");
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(
        events.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );

    let initiated = app
        .call(
            Method::POST,
            "/v1/calls",
            caller,
            Some(json!({"calleeId": callee, "callType": "video_call"})),
        )
        .await;
    assert_eq!(initiated.status, StatusCode::CREATED, "{}", initiated.body);
    let id = initiated.body["call"]["id"].as_str().unwrap().to_owned();
    let mut seen = String::new();
    read_until(&mut events, &mut seen, "event: call.ringing").await;
    assert!(seen.contains(&id), "the ring names the call: {seen}");

    let accepted = app
        .ok(
            Method::POST,
            &format!("/v1/calls/{id}/accept"),
            callee,
            None,
        )
        .await;
    assert_eq!(accepted["call"]["status"], json!("accepted"));
    for (party, role) in [(caller, "caller"), (callee, "callee")] {
        let t = app.livekit_token(party, json!({"callId": id})).await;
        assert_eq!(t["role"], json!(role));
        sim(&stack, "join", json!({"token": t["token"]})).await;
    }
    testkit::eventually(WAIT, "the call live", || async {
        let c = app
            .ok(Method::GET, &format!("/v1/calls/{id}"), caller, None)
            .await;
        (c["call"]["status"] == json!("live")).then_some(())
    })
    .await;
    let ended = app
        .ok(Method::POST, &format!("/v1/calls/{id}/end"), caller, None)
        .await;
    assert_eq!(ended["call"]["status"], json!("ended"));
    read_until(&mut events, &mut seen, "event: call.ended").await;
    let c = app
        .ok(Method::GET, &format!("/v1/calls/{id}"), callee, None)
        .await;
    assert_eq!(c["call"]["status"], json!("ended"), "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_gateway_envelopes_request_ids_ops_network_and_rate_limit() {
    let (config, db) = StackConfig::fresh().await.expect("config");
    let config = config.with_env("DB_POOL_SIZE", DB_POOL_SIZE);
    let openapi = config.log_dir.join("openapi.json");
    std::fs::write(&openapi, r#"{"openapi":"3.1.0","paths":{}}"#).unwrap();
    let (mut stack, gateway) = stack_behind_gateway(
        config,
        GatewayConfig::new().unwrap().with_openapi_file(&openapi),
    )
    .await
    .expect("stack and gateway");
    let app = Client::of(&gateway);
    let ops = user(&db, "ops", false, Some("ops")).await;
    let someone = user(&db, "someone", false, None).await;

    // Operators from the allowed network reach the ops API and the dashboard; the service
    // still checks the role.
    let sessions = app.ok(Method::GET, "/v1/ops/sessions", ops, None).await;
    assert!(sessions["sessions"].is_array(), "{sessions}");
    let dashboard = Client::send(app.request(Method::GET, "/ops", None)).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(
        dashboard.body.as_str().unwrap_or("").contains("<html"),
        "{}",
        dashboard.body
    );
    assert_envelope(
        &app.call(Method::GET, "/v1/ops/sessions", someone, None)
            .await,
        403,
        "FORBIDDEN",
    );

    // Unknown routes, and the services' own /metrics, are the gateway's 404 envelope.
    for path in ["/v1/nothing", "/metrics", "/", "/v1/sessionsx"] {
        let a = Client::send(app.request(Method::GET, path, Some(someone))).await;
        assert_envelope(&a, 404, "NOT_FOUND");
        assert_eq!(a.body["error"], json!("no such route"), "{path}");
    }
    // The merged OpenAPI document is a file the gateway serves.
    let doc = Client::send(app.request(Method::GET, "/openapi.json", None)).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], json!("3.1.0"));

    // A body over the limit never reaches a service.
    let big = Client::send(
        app.request(Method::POST, "/v1/sessions", Some(someone))
            .header("x-request-id", "e2e-too-large")
            .header("content-type", "application/json")
            .body(format!(r#"{{"title":"{}"}}"#, "x".repeat(100 * 1024))),
    )
    .await;
    assert_envelope(&big, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(big.request_id.as_deref(), Some("e2e-too-large"));

    // X-Request-Id: the client's is kept, passed on and echoed by the service itself; without
    // one (or with an unusable one) the gateway makes one of 32 hex digits, which is also the
    // trace id it starts.
    let kept = Client::send(
        app.request(Method::GET, "/v1/sessions", Some(someone))
            .header("x-request-id", "e2e-client-id-1"),
    )
    .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    assert_eq!(kept.request_id.as_deref(), Some("e2e-client-id-1"));
    let made = Client::send(app.request(Method::GET, "/v1/sessions", Some(someone))).await;
    let replaced = Client::send(
        app.request(Method::GET, "/v1/sessions", Some(someone))
            .header("x-request-id", "not usable!"),
    )
    .await;
    for a in [&made, &replaced] {
        let id = a.request_id.as_deref().expect("an id");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }
    let log = gateway.access_log();
    let entry = |id: &str| {
        log.iter()
            .find(|e| e["requestId"] == json!(id))
            .unwrap_or_else(|| panic!("{id} in the access log: {log:?}"))
            .clone()
    };
    assert_eq!(
        entry("e2e-client-id-1")["upstreamRequestId"],
        json!("e2e-client-id-1")
    );
    let made_id = made.request_id.clone().unwrap();
    let made_entry = entry(&made_id);
    assert_eq!(made_entry["upstreamRequestId"], json!(made_id));
    assert!(
        made_entry["traceparent"]
            .as_str()
            .unwrap()
            .starts_with(&format!("00-{made_id}-")),
        "{made_entry}"
    );
    let too_large = entry("e2e-too-large");
    assert_eq!(too_large["upstream"], json!(""), "not proxied: {too_large}");
    assert_eq!(too_large["status"], json!(413));

    // A gateway rendered for another operators' network, with a tight limit (1 a minute,
    // burst 2): ops refused by address, then the limit.
    let strict = Gateway::start(
        &stack,
        GatewayConfig::new()
            .unwrap()
            .with_ops_allow_cidr("10.0.0.0/8")
            .with_rate_limit("1r/m", 2)
            .with_openapi_file(&stack.config.log_dir.join("absent.json")),
    )
    .await
    .expect("strict gateway");
    let outside = Client::of(&strict);
    let refused = outside
        .call(Method::GET, "/v1/ops/sessions", ops, None)
        .await;
    assert_envelope(&refused, 403, "FORBIDDEN");
    assert_eq!(
        refused.body["error"],
        json!("operator endpoints are not reachable from this network")
    );
    assert!(refused.request_id.is_some());
    assert_envelope(
        &Client::send(outside.request(Method::GET, "/ops/", None)).await,
        403,
        "FORBIDDEN",
    );
    // no merged document there: a 404 envelope, not an nginx page
    assert_envelope(
        &Client::send(outside.request(Method::GET, "/openapi.json", None)).await,
        404,
        "NOT_FOUND",
    );
    let limited = outside
        .call(Method::GET, "/v1/sessions", someone, None)
        .await;
    assert_envelope(&limited, 429, "RATE_LIMITED");
    assert_eq!(limited.retry_after.as_deref(), Some("1"));
    // LiveKit's webhooks are not held to the per-address limit: this unsigned one reaches
    // webhook-ingest, which refuses it.
    let hook = Client::send(
        outside
            .request(Method::POST, "/webhooks/livekit", None)
            .header("content-type", "application/webhook+json")
            .body("{}"),
    )
    .await;
    assert_envelope(&hook, 401, "UNAUTHORIZED");

    // A service that is down: the gateway's 502 envelope.
    stack.kill9(Svc::Notifier).await.unwrap();
    let down = app
        .call(
            Method::PUT,
            "/v1/devices",
            someone,
            Some(json!({"platform": "android", "kind": "standard", "token": "t"})),
        )
        .await;
    assert_envelope(&down, 502, "INTERNAL_ERROR");
    assert!(down.request_id.is_some());
}
