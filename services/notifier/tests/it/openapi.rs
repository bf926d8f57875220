//! `GET /openapi.json`: a generated document naming every route API.md gives this service.

use serde_json::{Value, json};

use crate::support;

/// API.md's routes of the notifier (taken from it by hand: a route missing from the document
/// fails here).
const API_MD: &[(&str, &str)] = &[
    ("put", "/v1/devices"),
    ("delete", "/v1/devices/{token}"),
    ("get", "/v1/events"),
];

#[tokio::test]
async fn the_document_names_every_route_of_api_md() {
    let w = support::log_mode().await;
    let res = w.http.get(w.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    serde_json::from_value::<utoipa::openapi::OpenApi>(doc.clone()).expect("an OpenAPI document");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "notifier");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc.get("servers").is_none(), "servers are the deployer's");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (method, path) in API_MD {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is missing from {doc:#}");
        assert_eq!(op["security"][0]["bearer"], json!([]), "{method} {path}");
        for status in ["200", "401"] {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} answers {status}"
            );
        }
    }
    let paths = doc["paths"].as_object().unwrap();
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(operations, API_MD.len(), "{:#}", doc["paths"]);
    // The stream is documented as what it is.
    assert!(
        doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
            .is_object()
    );
    assert!(doc["paths"]["/v1/devices"]["put"]["responses"]["422"].is_object());
    assert!(doc["paths"]["/v1/devices/{token}"]["delete"]["responses"]["404"].is_object());
    testkit::assert_openapi_refs_resolve(&doc);
}
