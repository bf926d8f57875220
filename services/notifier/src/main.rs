use notifier::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let _telemetry = telemetry::init("notifier", config.common.otlp_endpoint.as_deref())?;
    let app = Application::build(config).await?;
    tracing::info!(port = app.port(), "notifier listening");
    app.run_until_stopped(web::server::signal()).await
}
