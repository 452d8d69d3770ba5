//! The worker's small HTTP face for orchestrators and Prometheus: `/healthz` (the process
//! is up), `/readyz` (PostgreSQL and Redis answer within a second), `/metrics`.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::jobs::WorkerState;

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn redis_ping(state: &WorkerState) -> Result<(), String> {
    redis::cmd("PING")
        .query_async::<String>(&mut state.redis.clone())
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn readyz(state: web::Data<Arc<WorkerState>>) -> HttpResponse {
    presence_runtime::readiness::readyz(&state.pool, redis_ping(&state)).await
}

async fn metrics(state: web::Data<Arc<WorkerState>>) -> HttpResponse {
    let readiness =
        presence_runtime::readiness::check_dependencies(&state.pool, redis_ping(&state)).await;
    state.metrics.ready.set(readiness.is_ready().into());
    state.metrics.response()
}

/// Where a worker serves HTTP when `WORKER_HTTP_ADDR` is unset.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9100";

/// Binds `addr` (if given, strictly; else [`DEFAULT_ADDR`], or any free port on 127.0.0.1
/// when another replica on this host holds it) and returns the server (to run) and the
/// address it got.
pub fn serve(
    addr: Option<&str>,
    state: Arc<WorkerState>,
) -> std::io::Result<(Server, std::net::SocketAddr)> {
    let listener = match addr {
        Some(addr) => TcpListener::bind(addr)?,
        None => TcpListener::bind(DEFAULT_ADDR).or_else(|_| TcpListener::bind("127.0.0.1:0"))?,
    };
    let bound = listener.local_addr()?;
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok((server, bound))
}
