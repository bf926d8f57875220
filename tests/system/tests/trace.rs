//! One trace across the system: a call initiation sent through the nginx gateway, handled by
//! call-signaling (its HTTP span), written to the outbox in the same transaction, relayed to
//! NATS with the trace context in the message headers, and consumed by the notifier, whose
//! consumer span (it pushes to the callee's phone) is a child of call-signaling's; the push's
//! result comes back the same way (call-signaling's consumer makes the call ring). Every
//! service exports its spans over OTLP/HTTP to a receiver in the test.

use std::time::Duration;

use serde_json::json;
use system::gateway::stack_behind_gateway;
use system::otlp::{OtlpReceiver, SpanRecord};
use system::{GatewayConfig, StackConfig};
use uuid::Uuid;

/// The notifier's consumer of `call.*` events that sends the pushes.
const PUSH_CONSUMER: &str = "notifier-push-calls";

/// What the trace of one call initiation must hold: call-signaling's span of the request,
/// the notifier's consumer span whose parent is one of call-signaling's spans, and
/// call-signaling's consumer of the push result, a child of the notifier's span.
fn crosses_nats(spans: &[SpanRecord]) -> Option<(SpanRecord, SpanRecord)> {
    let http = spans
        .iter()
        .find(|s| s.service == "call-signaling" && s.name == "POST /v1/calls")?;
    let signaling: Vec<&str> = spans
        .iter()
        .filter(|s| s.service == "call-signaling")
        .map(|s| s.span_id.as_str())
        .collect();
    let consumer = spans.iter().find(|s| {
        s.service == "notifier"
            && s.attributes.get("consumer").map(String::as_str) == Some(PUSH_CONSUMER)
            && s.attributes.get("event.type").map(String::as_str) == Some("call.initiated")
            && s.parent_span_id
                .as_deref()
                .is_some_and(|p| signaling.contains(&p))
    })?;
    spans.iter().find(|s| {
        s.service == "call-signaling"
            && s.attributes.get("event.type").map(String::as_str) == Some("notify.push_result")
            && s.parent_span_id.as_deref() == Some(consumer.span_id.as_str())
    })?;
    Some((http.clone(), consumer.clone()))
}

fn describe(spans: &[SpanRecord]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {:?} span {} parent {:?}",
                s.service, s.name, s.span_id, s.parent_span_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits for the trace to hold both ends; on a timeout, prints what did arrive.
async fn wait_for(receiver: &OtlpReceiver, trace_id: &str) -> (SpanRecord, SpanRecord) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let spans = receiver.trace(trace_id);
        if let Some(found) = crosses_nats(&spans) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trace {trace_id} did not go to the notifier's consumer and back; its spans:\n{}",
            describe(&spans)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_of_a_call_goes_from_the_gateway_through_nats_to_the_notifier() {
    let receiver = OtlpReceiver::start().await.expect("OTLP receiver");
    let (config, db) = StackConfig::fresh().await.expect("config");
    let config = config
        // PostgreSQL's 100 connections are shared by every stack running at once
        .with_env("DB_POOL_SIZE", "2")
        .with_env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        // the SDK's batch delay is 5 s by default
        .with_env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let (_stack, gateway) = stack_behind_gateway(config, GatewayConfig::new().unwrap())
        .await
        .expect("stack and gateway");
    let http = reqwest::Client::new();
    let mut users = Vec::new();
    for name in ["caller1", "callee1", "caller2", "callee2"] {
        users.push(
            testkit::profile(
                &db,
                &format!("{name}_{}", Uuid::new_v4().simple()),
                false,
                None,
            )
            .await,
        );
    }
    for callee in [users[1], users[3]] {
        let device = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let res = http
            .put(format!("{}/v1/devices", gateway.url()))
            .bearer_auth(testkit::token_for(callee))
            .json(&json!({"platform": "ios", "kind": "voip", "token": device}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let initiate = |caller: Uuid, callee: Uuid| {
        http.post(format!("{}/v1/calls", gateway.url()))
            .bearer_auth(testkit::token_for(caller))
            .json(&json!({"calleeId": callee, "callType": "audio_call"}))
    };

    // The client's own trace context: the service's HTTP span is its child.
    let trace_id = Uuid::new_v4().simple().to_string();
    let client_span = &Uuid::new_v4().simple().to_string()[..16];
    let res = initiate(users[0], users[1])
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .header("x-request-id", "trace-test-call-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (span, consumer) = wait_for(&receiver, &trace_id).await;
    assert_eq!(
        span.parent_span_id.as_deref(),
        Some(client_span),
        "{span:?}"
    );
    // the request id the gateway passed on, as call-signaling saw it
    assert_eq!(
        span.attributes.get("request.id").map(String::as_str),
        Some("trace-test-call-1"),
        "{span:?}"
    );
    assert_eq!(consumer.trace_id, trace_id);

    // No trace context and no request id: the gateway starts the trace, and its id is the
    // X-Request-Id it answers with.
    let res = initiate(users[2], users[3]).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 32, "{request_id}");
    let (span, _) = wait_for(&receiver, &request_id).await;
    assert_eq!(
        span.parent_span_id.as_deref(),
        Some(&request_id[..16]),
        "the gateway's hop is the parent: {span:?}"
    );
}
