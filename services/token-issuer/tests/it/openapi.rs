//! `GET /openapi.json`: a generated document naming every route API.md gives this service.

use serde_json::Value;

use crate::spawn_app;

/// API.md's routes of token-issuer (taken from it by hand: a route missing from the
/// document fails here).
const API_MD: &[(&str, &str)] = &[("post", "/v1/tokens")];

#[tokio::test]
async fn the_document_names_every_route_of_api_md() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    // It reads as an OpenAPI 3.1 document.
    serde_json::from_value::<utoipa::openapi::OpenApi>(doc.clone()).expect("an OpenAPI document");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "token-issuer");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc.get("servers").is_none(), "servers are the deployer's");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (method, path) in API_MD {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is missing from {doc:#}");
        assert_eq!(
            op["security"][0]["bearer"],
            serde_json::json!([]),
            "{method} {path}"
        );
        for status in ["200", "401", "413", "422", "429"] {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} answers {status}"
            );
        }
    }
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        API_MD.len(),
        "{:#}",
        doc["paths"]
    );
    testkit::assert_openapi_refs_resolve(&doc);
}
