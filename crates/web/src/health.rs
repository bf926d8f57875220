//! `GET /health` and `GET /metrics`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::future::BoxFuture;

/// One dependency `/health` checks.
pub trait HealthCheck: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The checks of a service, registered as app data.
#[derive(Clone, Default)]
pub struct HealthChecks(pub Vec<Arc<dyn HealthCheck>>);

impl HealthChecks {
    pub fn with(mut self, check: impl HealthCheck) -> Self {
        self.0.push(Arc::new(check));
        self
    }
}

/// The database answers `SELECT 1`.
pub struct DbCheck(pub db::Pool);

impl HealthCheck for DbCheck {
    fn name(&self) -> &'static str {
        "database"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            use diesel_async::RunQueryDsl;
            let mut conn = db::pool::conn(&self.0).await.map_err(|e| e.to_string())?;
            diesel::sql_query("SELECT 1")
                .execute(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// LiveKit's RoomService answers (`ListRooms` of nothing).
pub struct LiveKitCheck(pub Arc<dyn livekit::RoomService>);

impl HealthCheck for LiveKitCheck {
    fn name(&self) -> &'static str {
        "livekit"
    }
    fn check(&self) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .list_rooms(&[])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// The NATS connection is up.
pub struct NatsCheck(pub async_nats::Client);

impl HealthCheck for NatsCheck {
    fn name(&self) -> &'static str {
        "nats"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match self.0.connection_state() {
                async_nats::connection::State::Connected => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
    }
}

async fn health(checks: web::Data<HealthChecks>) -> HttpResponse {
    let mut results = serde_json::Map::new();
    let mut healthy = true;
    for check in &checks.0 {
        let outcome = tokio::time::timeout(Duration::from_secs(2), check.check())
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        let value = match outcome {
            Ok(()) => serde_json::json!({"status": "ok"}),
            Err(e) => {
                healthy = false;
                serde_json::json!({"status": "failing", "error": e})
            }
        };
        results.insert(check.name().into(), value);
    }
    let body = serde_json::json!({
        "status": if healthy { "healthy" } else { "degraded" },
        "checks": results,
    });
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(telemetry::metrics().render())
}

/// Registers `/health` and `/metrics`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics));
}
