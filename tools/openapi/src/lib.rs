//! The gateway's OpenAPI document: the six services' documents (each generated from its
//! handlers, served at the service's own `GET /openapi.json`) merged into one, which the
//! gateway serves at `GET /openapi.json` from `deploy/gateway/openapi.json`.

use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

/// Where the merged document is committed (relative to the workspace root).
pub const COMMITTED: &str = "deploy/gateway/openapi.json";

/// Every service's document, by service name.
pub fn services() -> Vec<(&'static str, OpenApi)> {
    vec![
        ("token-issuer", token_issuer::openapi()),
        ("session-manager", session_manager::openapi()),
        ("call-signaling", call_signaling::openapi()),
        ("moderation", moderation::openapi()),
        ("webhook-ingest", webhook_ingest::openapi()),
        ("notifier", notifier::openapi()),
    ]
}

/// One document for the whole API behind the gateway. Schemas of the same name must be the
/// same schema in every service (they come from the shared crates), so a clash is an error.
pub fn merged() -> anyhow::Result<OpenApi> {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Ipelya Live")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every route of the API behind the gateway; each service serves its own \
                     part at its GET /openapi.json.",
                ))
                .build(),
        )
        .build();
    for (name, part) in services() {
        if let (Some(have), Some(add)) = (&doc.components, &part.components) {
            for (schema, value) in &add.schemas {
                if let Some(existing) = have.schemas.get(schema)
                    && serde_json::to_value(existing)? != serde_json::to_value(value)?
                {
                    anyhow::bail!("schema {schema} of {name} differs from another service's");
                }
            }
        }
        if let Some(paths) = doc
            .paths
            .paths
            .keys()
            .find(|p| part.paths.paths.contains_key(*p))
        {
            anyhow::bail!("path {paths} is served by two services (the second: {name})");
        }
        doc.merge(part);
    }
    Ok(doc)
}

/// The merged document as committed: pretty JSON with a final newline.
pub fn render() -> anyhow::Result<String> {
    Ok(merged()?.to_pretty_json()? + "\n")
}
