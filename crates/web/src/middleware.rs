//! Request metrics (latency per route pattern, method and status), request ids and the
//! request span.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Use with `actix_web::middleware::from_fn(web::middleware::observe)`.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!("http", http.method = %method, http.route = %route, request.id = %request_id);
    let result = next.call(req).instrument(span).await;
    let status = match &result {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    let elapsed = started.elapsed().as_secs_f64();
    if route != "/metrics" && route != "/health" {
        let labels = [
            ("route", route),
            ("method", method),
            ("status", status.to_string()),
        ];
        metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed);
    }
    result.map(|mut res| {
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            res.headers_mut().insert(REQUEST_ID.clone(), v);
        }
        res
    })
}
