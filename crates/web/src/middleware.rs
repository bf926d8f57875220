//! Request metrics (latency per route pattern, method and status), request ids and the
//! request span, a child of the caller's W3C trace context (the gateway always sends one).

use std::collections::HashMap;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The W3C trace context headers a request may carry.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

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
    let span = tracing::info_span!(
        "http",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.method = %method,
        http.route = %route,
        request.id = %request_id,
    );
    let trace_context: HashMap<String, String> = TRACE_HEADERS
        .iter()
        .filter_map(|name| {
            let value = req.headers().get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    bus::trace::set_parent(&span, &trace_context);
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

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpResponse, test, web};
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// The trace id the handler runs under, and the echoed request id.
    async fn trace_of(headers: &[(&str, &str)]) -> (String, String) {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(App::new().wrap(from_fn(observe)).route(
            "/",
            web::get().to(|| async {
                let headers = bus::trace::current_headers();
                HttpResponse::Ok().body(bus::trace::trace_id(&headers).unwrap_or_default())
            }),
        ))
        .await;
        let mut req = test::TestRequest::get().uri("/");
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let res = test::call_service(&app, req.to_request()).await;
        assert!(res.status().is_success());
        let request_id = res
            .headers()
            .get(&REQUEST_ID)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let body = test::read_body(res).await;
        (String::from_utf8(body.to_vec()).unwrap(), request_id)
    }

    fn is_trace_id(id: &str) -> bool {
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0".repeat(32)
    }

    #[actix_web::test]
    async fn the_request_span_continues_the_callers_trace() {
        let (trace, _) = trace_of(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )])
        .await;
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[actix_web::test]
    async fn a_missing_or_malformed_traceparent_starts_a_trace_of_its_own() {
        for headers in [
            vec![],
            vec![("traceparent", "garbage")],
            vec![("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-01")],
            vec![(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )],
            vec![(
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01x",
            )],
        ] {
            let (trace, _) = trace_of(&headers).await;
            assert!(is_trace_id(&trace), "{headers:?}: {trace}");
            assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736", "{headers:?}");
        }
    }

    #[actix_web::test]
    async fn the_request_id_is_kept_when_sane_else_made() {
        let (_, kept) = trace_of(&[("x-request-id", "client-id-1")]).await;
        assert_eq!(kept, "client-id-1");
        for headers in [vec![], vec![("x-request-id", "")]] {
            let (_, made) = trace_of(&headers).await;
            assert!(is_trace_id(&made), "{made}");
        }
        let long = "x".repeat(129);
        let (_, made) = trace_of(&[("x-request-id", long.as_str())]).await;
        assert_ne!(made, long);
    }
}
