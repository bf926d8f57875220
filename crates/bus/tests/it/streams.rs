//! Stream creation: the replica count of `NATS_STREAM_REPLICAS` reaches JetStream.

use bus::Family;

use crate::Env;

/// Every family's stream and the dead-letter stream get the count asked for, and a count
/// the server cannot hold is refused with the stream named (the test server is a single
/// node, which holds one copy only).
#[tokio::test]
async fn streams_are_created_with_the_replica_count_asked_for() {
    let env = Env::without_streams().await;
    let err = env
        .subjects
        .ensure_streams_with_replicas(&env.js, 3)
        .await
        .expect_err("a single server holds no 3 replicas");
    assert!(
        err.to_string()
            .contains(&env.subjects.stream(Family::LiveKit)),
        "{err}"
    );

    env.subjects
        .ensure_streams_with_replicas(&env.js, 1)
        .await
        .expect("streams");
    let mut names: Vec<String> = Family::ALL
        .iter()
        .map(|f| env.subjects.stream(*f))
        .collect();
    names.push(env.subjects.dead_letter_stream());
    for name in names {
        let mut stream = env.js.get_stream(&name).await.expect("stream");
        let info = stream.info().await.expect("stream info");
        assert_eq!(info.config.num_replicas, 1, "{name}");
    }
}
