//! `GET /openapi.json`: generated from the handlers, naming every JSON route API.md gives
//! moderation (and ours for the dashboard); the dashboard's HTML is not in it.

use serde_json::Value;

use crate::support;

/// API.md's "moderation and operators" table, copied (`GET /ops` is the HTML page, not in
/// the document): a route missing from the document fails here.
const API_MD: &[(&str, &str)] = &[
    ("post", "/v1/moderation/sessions/{id}/kick"),
    ("post", "/v1/moderation/sessions/{id}/bans"),
    ("delete", "/v1/moderation/sessions/{id}/bans/{userId}"),
    ("post", "/v1/moderation/creator-bans"),
    ("delete", "/v1/moderation/creator-bans/{userId}"),
    ("get", "/v1/moderation/creator-bans"),
    ("delete", "/v1/moderation/messages/{messageId}"),
    ("post", "/v1/reports"),
    ("get", "/v1/ops/sessions"),
    ("get", "/v1/ops/sessions/{id}"),
    ("post", "/v1/ops/sessions/{id}/terminate"),
    ("post", "/v1/ops/participants/{sessionId}/{userId}/kick"),
    ("post", "/v1/ops/users/{userId}/ban"),
    ("delete", "/v1/ops/users/{userId}/ban"),
    ("get", "/v1/ops/reports"),
    ("post", "/v1/ops/reports/{id}/resolve"),
    ("put", "/v1/ops/config/live-sessions-disabled"),
    ("get", "/v1/ops/usage"),
    ("get", "/v1/ops/stats/daily"),
    ("get", "/v1/ops/stats/top-creators"),
    ("get", "/v1/ops/stats/problem-sessions"),
];

/// Ours, for the dashboard.
const OURS: &[(&str, &str)] = &[
    ("get", "/v1/ops/bans"),
    ("get", "/v1/ops/config"),
    ("get", "/v1/ops/stats/recent-creators"),
];

#[tokio::test]
async fn openapi_json_names_every_json_route_and_no_html() {
    let stack = support::stack().await;
    let res = stack
        .http
        .get(format!("{}/openapi.json", stack.moderation))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["info"]["title"], "moderation");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (method, path) in API_MD.iter().chain(OURS) {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is missing");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path} declares no 401"
        );
        if path.starts_with("/v1/ops/") {
            assert!(
                op["responses"]["403"].is_object(),
                "{method} {path}: operators only, declares no 403"
            );
        }
    }
    let paths = doc["paths"].as_object().unwrap();
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        operations,
        API_MD.len() + OURS.len(),
        "no route beyond these"
    );
    assert!(
        paths.keys().all(|p| !p.starts_with("/ops")),
        "HTML is not in it"
    );
    // The bounds the handlers check are the document's.
    let max_hours = domain::moderation::MAX_BAN_HOURS;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["GlobalBanRequest"]["properties"]["hours"]["maximum"],
        max_hours
    );
    assert_eq!(
        schemas["ResolveRequest"]["properties"]["hours"]["maximum"],
        max_hours
    );
    // What the service serves is what `openapi()` builds (no hand-written copy).
    assert_eq!(doc, serde_json::to_value(moderation::openapi()).unwrap());
    stack.shutdown().await;
}
