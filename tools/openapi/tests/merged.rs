//! The merged document: generated from the services' code, committed where the gateway
//! serves it, and naming every operation of API.md.

use std::collections::BTreeSet;

/// Every operation API.md lists (path parameters' names do not matter: compared as `{}`).
const API_MD: &[&str] = &[
    "POST /v1/tokens",
    "POST /v1/sessions",
    "GET /v1/sessions",
    "GET /v1/sessions/{id}",
    "POST /v1/sessions/{id}/leave",
    "POST /v1/sessions/{id}/end",
    "POST /v1/sessions/{id}/pause",
    "POST /v1/sessions/{id}/resume",
    "POST /v1/sessions/{id}/guests/invite",
    "POST /v1/sessions/{id}/guests/invitations/{invitationId}/respond",
    "POST /v1/sessions/{id}/guests/requests",
    "POST /v1/sessions/{id}/guests/requests/{requestId}/respond",
    "POST /v1/sessions/{id}/guests/{userId}/end",
    "POST /v1/sessions/{id}/messages",
    "GET /v1/sessions/{id}/messages",
    "GET /v1/gifts",
    "POST /v1/sessions/{id}/gifts",
    "POST /v1/calls",
    "GET /v1/calls",
    "GET /v1/calls/{id}",
    "POST /v1/calls/{id}/accept",
    "POST /v1/calls/{id}/reject",
    "POST /v1/calls/{id}/cancel",
    "POST /v1/calls/{id}/end",
    "PUT /v1/devices",
    "DELETE /v1/devices/{token}",
    "GET /v1/events",
    "POST /v1/moderation/sessions/{id}/kick",
    "POST /v1/moderation/sessions/{id}/bans",
    "DELETE /v1/moderation/sessions/{id}/bans/{userId}",
    "POST /v1/moderation/creator-bans",
    "GET /v1/moderation/creator-bans",
    "DELETE /v1/moderation/creator-bans/{userId}",
    "DELETE /v1/moderation/messages/{messageId}",
    "POST /v1/reports",
    "GET /v1/ops/sessions",
    "GET /v1/ops/sessions/{id}",
    "POST /v1/ops/sessions/{id}/terminate",
    "POST /v1/ops/participants/{sessionId}/{userId}/kick",
    "POST /v1/ops/users/{userId}/ban",
    "DELETE /v1/ops/users/{userId}/ban",
    "GET /v1/ops/reports",
    "POST /v1/ops/reports/{id}/resolve",
    "PUT /v1/ops/config/live-sessions-disabled",
    "GET /v1/ops/usage",
    "GET /v1/ops/stats/daily",
    "GET /v1/ops/stats/top-creators",
    "GET /v1/ops/stats/problem-sessions",
    "POST /webhooks/livekit",
];

fn shape(op: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in op.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

fn operations(doc: &serde_json::Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                ops.insert(shape(&format!("{} {path}", method.to_uppercase())));
            }
        }
    }
    ops
}

#[test]
fn the_merged_document_names_every_operation_of_api_md() {
    let doc = serde_json::to_value(openapi::merged().expect("merge")).expect("json");
    let have = operations(&doc);
    let missing: Vec<_> = API_MD
        .iter()
        .map(|op| shape(op))
        .filter(|op| !have.contains(op))
        .collect();
    assert!(missing.is_empty(), "missing from the document: {missing:?}");
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn every_service_document_is_a_part_of_the_merged_one() {
    let merged = operations(&serde_json::to_value(openapi::merged().unwrap()).unwrap());
    for (name, doc) in openapi::services() {
        let part = operations(&serde_json::to_value(doc).unwrap());
        assert!(!part.is_empty(), "{name} documents no operation");
        assert!(part.is_subset(&merged), "{name}: {part:?}");
    }
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(openapi::COMMITTED);
    let committed = std::fs::read_to_string(&path).expect("deploy/gateway/openapi.json");
    assert!(
        committed == openapi::render().unwrap(),
        "{} is stale: run `cargo run -p openapi` and commit it",
        openapi::COMMITTED
    );
}
