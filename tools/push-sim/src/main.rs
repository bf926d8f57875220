//! `push-sim`: the APNs and FCM stand-ins as one process, for local runs and the load
//! generator. Writes the generated test credentials to `PUSH_SIM_DIR` and the notifier's
//! environment to `PUSH_SIM_DIR/notifier.env`.

use std::net::TcpListener;

use anyhow::Context;
use push_sim::{ApnsSim, FcmSim};
use tracing_subscriber::EnvFilter;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let apns_addr = env_or("PUSH_SIM_APNS_ADDR", "127.0.0.1:8095");
    let fcm_addr = env_or("PUSH_SIM_FCM_ADDR", "127.0.0.1:8096");
    let dir = std::path::PathBuf::from(env_or("PUSH_SIM_DIR", ".run/push-sim"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let apns_listener =
        TcpListener::bind(&apns_addr).with_context(|| format!("cannot listen on {apns_addr}"))?;
    let fcm_listener =
        TcpListener::bind(&fcm_addr).with_context(|| format!("cannot listen on {fcm_addr}"))?;
    let apns = ApnsSim::start(Default::default(), apns_listener).await?;
    let fcm = FcmSim::start(Default::default(), fcm_listener).await?;

    let key_file = dir.join("apns-test-key.p8");
    let sa_file = dir.join("fcm-test-service-account.json");
    std::fs::write(&key_file, &apns.credentials().keys.private_pem)?;
    std::fs::write(&sa_file, fcm.credentials().service_account_json())?;
    let c = apns.credentials();
    let env = format!(
        "APNS_URL={}\nAPNS_KEY_ID={}\nAPNS_TEAM_ID={}\nAPNS_TOPIC={}\nAPNS_KEY_FILE={}\n\
         FCM_URL={}\nFCM_PROJECT_ID={}\nFCM_CREDENTIALS_FILE={}\n",
        apns.url(),
        c.key_id,
        c.team_id,
        c.topic,
        key_file.display(),
        fcm.url(),
        fcm.credentials().project_id,
        sa_file.display(),
    );
    std::fs::write(dir.join("notifier.env"), &env)?;
    tracing::info!(apns = %apns.url(), fcm = %fcm.url(), dir = %dir.display(), "push-sim ready");
    print!("{env}");

    web_signal().await;
    apns.stop().await;
    fcm.stop().await;
    Ok(())
}

async fn web_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
