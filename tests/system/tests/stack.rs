//! The harness itself: every process starts healthy on its own port, and a SIGKILLed
//! service comes back on the same port.

use system::{Stack, StackConfig, Svc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_starts_and_a_killed_one_comes_back() {
    let (config, _db) = StackConfig::fresh().await.expect("config");
    let mut stack = Stack::start(config).await.expect("stack");
    for svc in Svc::SERVICES {
        let health: serde_json::Value = reqwest::get(format!("{}/health", stack.url(svc)))
            .await
            .expect("health")
            .json()
            .await
            .expect("health body");
        assert_eq!(health["status"], "healthy", "{}: {health}", svc.bin());
    }
    stack.kill9(Svc::SessionManager).await.expect("kill");
    assert!(!stack.is_running(Svc::SessionManager));
    assert!(
        reqwest::get(format!("{}/health", stack.url(Svc::SessionManager)))
            .await
            .is_err(),
        "nothing answers after SIGKILL"
    );
    stack.restart(Svc::SessionManager).await.expect("restart");
    assert!(stack.is_running(Svc::SessionManager));
}
