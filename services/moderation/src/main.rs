use moderation::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let _telemetry = telemetry::init("moderation", config.common.otlp_endpoint.as_deref())?;
    let app = Application::build(config).await?;
    tracing::info!(port = app.port(), "moderation listening");
    app.run_until_stopped(web::server::signal()).await
}
