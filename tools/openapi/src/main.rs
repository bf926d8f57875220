//! `openapi [--check]`: writes the gateway's merged OpenAPI document to
//! `deploy/gateway/openapi.json`, or with `--check` fails when the committed one is stale.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join(openapi::COMMITTED);
    let fresh = openapi::render()?;
    if std::env::args().any(|a| a == "--check") {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != fresh {
            anyhow::bail!(
                "{} is stale: run `cargo run -p openapi` and commit it",
                openapi::COMMITTED
            );
        }
        println!("{} is up to date", openapi::COMMITTED);
    } else {
        std::fs::write(&path, fresh)?;
        println!("wrote {}", openapi::COMMITTED);
    }
    Ok(())
}
