//! The harness itself: the whole stack starts and answers.

use crate::support;

#[tokio::test]
async fn the_stack_starts_and_every_service_is_healthy() {
    let stack = support::stack().await;
    for base in [
        &stack.moderation,
        &stack.sessions,
        &stack.tokens,
        &stack.ingest,
    ] {
        let res = stack
            .http
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{base}");
    }
    stack.shutdown().await;
}
