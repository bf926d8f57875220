//! `GET /openapi.json`: the generated document names every route API.md gives this service.

use serde_json::Value;

use crate::stack;

/// API.md's session-manager table, copied by hand (with `/resume` of the pause line).
const API_MD: &[(&str, &str)] = &[
    ("post", "/v1/sessions"),
    ("get", "/v1/sessions"),
    ("get", "/v1/sessions/{id}"),
    ("post", "/v1/sessions/{id}/leave"),
    ("post", "/v1/sessions/{id}/end"),
    ("post", "/v1/sessions/{id}/pause"),
    ("post", "/v1/sessions/{id}/resume"),
    ("post", "/v1/sessions/{id}/guests/invite"),
    (
        "post",
        "/v1/sessions/{id}/guests/invitations/{invitationId}/respond",
    ),
    ("post", "/v1/sessions/{id}/guests/requests"),
    (
        "post",
        "/v1/sessions/{id}/guests/requests/{requestId}/respond",
    ),
    ("post", "/v1/sessions/{id}/guests/{userId}/end"),
    ("post", "/v1/sessions/{id}/messages"),
    ("get", "/v1/sessions/{id}/messages"),
    ("get", "/v1/gifts"),
    ("post", "/v1/sessions/{id}/gifts"),
];

#[tokio::test]
async fn the_document_names_every_route_of_api_md() {
    let stack = stack().await;
    let res = stack
        .http
        .get(format!("{}/openapi.json", stack.sessions))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(doc["info"]["title"], "session-manager");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in API_MD {
        let op = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not in the document"))[method];
        assert!(op.is_object(), "{method} {path} is not in the document");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success answer"
        );
        assert!(
            responses.contains_key("401"),
            "{method} {path}: no 401 answer"
        );
        // Every path id is a UUID.
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] == "path" {
                assert_eq!(p["schema"]["format"], "uuid", "{method} {path}: {p}");
            }
        }
    }
    let documented: usize = paths
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        API_MD.len(),
        "operations not in API.md's table: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
}
