//! `GET /openapi.json`: generated from the handlers, naming every route API.md gives
//! call-signaling.

use serde_json::Value;

use crate::stack;

/// API.md's call-signaling table, copied: a route missing from the document fails here.
const API_MD: &[(&str, &str)] = &[
    ("post", "/v1/calls"),
    ("post", "/v1/calls/{id}/accept"),
    ("post", "/v1/calls/{id}/reject"),
    ("post", "/v1/calls/{id}/cancel"),
    ("post", "/v1/calls/{id}/end"),
    ("get", "/v1/calls/{id}"),
    ("get", "/v1/calls"),
];

#[tokio::test]
async fn openapi_json_names_every_route_of_api_md() {
    let s = stack().await;
    let res = s
        .http
        .get(format!("{}/openapi.json", s.calls))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["info"]["title"], "call-signaling");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (method, path) in API_MD {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is missing");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path} declares no 401"
        );
    }
    // What the service serves is what `openapi()` builds (no hand-written copy).
    assert_eq!(
        doc,
        serde_json::to_value(call_signaling::openapi()).unwrap()
    );
    s.shutdown().await;
}
