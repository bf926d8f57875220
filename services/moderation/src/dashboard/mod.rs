//! `GET /ops` and its assets: the operators' dashboard, a page shell holding no data (it
//! asks for the operator's JWT, keeps it in the tab's `sessionStorage` and calls
//! `/v1/ops/*` with it as a bearer token; every data endpoint checks the operator role, so
//! the shell itself needs no authentication).
//!
//! Everything is embedded in the binary (no CDN, no build step: plain HTML, CSS and JS), so
//! the dashboard works wherever the service runs, air-gapped included.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web as aw};

const INDEX_HTML: &str = include_str!("assets/index.html");

/// The assets: name under `/ops/assets/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

/// A fingerprint of the embedded assets: the shell links them as `?v=<fingerprint>`, so they
/// can be cached for a year and a new binary is still picked up at once.
static FINGERPRINT: LazyLock<String> = LazyLock::new(|| {
    // FNV-1a: stable across builds and platforms (std's hasher is not promised to be).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, _, bytes) in ASSETS {
        for b in *bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
});

static SHELL: LazyLock<String> = LazyLock::new(|| INDEX_HTML.replace("{{v}}", &FINGERPRINT));

/// The page may only talk to its own origin: a stolen-token XSS would need an injected
/// script, which this policy refuses.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Registers `/ops` and its assets.
pub fn routes(cfg: &mut aw::ServiceConfig) {
    cfg.route("/ops", aw::get().to(shell))
        .route("/ops/", aw::get().to(shell))
        .route("/ops/assets/{name}", aw::get().to(asset));
}

async fn shell() -> HttpResponse {
    let mut res = HttpResponse::Ok();
    secure(&mut res);
    res.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        // The shell names the assets' fingerprint: always revalidate it.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(SHELL.as_str())
}

async fn asset(name: aw::Path<String>) -> HttpResponse {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name.as_str()) else {
        return HttpResponse::NotFound()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/plain; charset=utf-8")
            .body("not found");
    };
    let mut res = HttpResponse::Ok();
    secure(&mut res);
    res.insert_header((header::CONTENT_TYPE, *content_type))
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((
            header::ETAG,
            HeaderValue::from_str(&format!("\"{}\"", *FINGERPRINT)).expect("hex is a header"),
        ))
        .body(*bytes)
}

fn secure(res: &mut actix_web::HttpResponseBuilder) {
    res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_links_fingerprinted_assets_only() {
        assert!(!SHELL.contains("{{v}}"));
        for (name, _, _) in ASSETS.iter().filter(|(n, _, _)| *n != "favicon.svg") {
            assert!(
                SHELL.contains(&format!("/ops/assets/{name}?v={}", *FINGERPRINT)),
                "{name} linked"
            );
        }
        // No external origin anywhere: the dashboard must work without a CDN (the SVG
        // namespace is a name, not a fetch).
        for (name, _, bytes) in ASSETS
            .iter()
            .chain([("index.html", "", INDEX_HTML.as_bytes())].iter())
        {
            let text = String::from_utf8_lossy(bytes).replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://")
                    && !text.contains("https://")
                    && !text.contains("src=\"//"),
                "{name} names an external origin"
            );
        }
    }
}
