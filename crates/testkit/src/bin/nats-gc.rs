//! Deletes the JetStream streams that earlier test runs left behind (namespaced streams
//! named `T<12 hex>_<FAMILY>`, older than ten minutes), so the shared NATS server does not
//! accumulate them. Run by the test command before the tests.

use std::time::Duration;

use futures_util::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = async_nats::connect(testkit::nats_url()).await?;
    let js = async_nats::jetstream::new(client);
    let mut names = js.stream_names();
    let mut stale = Vec::new();
    while let Some(name) = names.next().await {
        let name = name?;
        if is_test_stream(&name) {
            stale.push(name);
        }
    }
    let cutoff = time::OffsetDateTime::now_utc() - Duration::from_secs(600);
    let mut deleted = 0;
    for name in stale {
        if let Ok(mut stream) = js.get_stream(&name).await
            && let Ok(info) = stream.info().await
            && info.created < cutoff
            && js.delete_stream(&name).await.is_ok()
        {
            deleted += 1;
        }
    }
    println!("nats-gc: deleted {deleted} stale test streams");
    Ok(())
}

fn is_test_stream(name: &str) -> bool {
    let Some((ns, _family)) = name.split_once('_') else {
        return false;
    };
    ns.len() == 13 && ns.starts_with('T') && ns[1..].bytes().all(|b| b.is_ascii_hexdigit())
}
