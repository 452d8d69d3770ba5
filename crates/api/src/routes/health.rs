use actix_web::HttpResponse;

/// Liveness: answers without touching PostgreSQL or Redis, so a slow database never gets
/// a healthy process restarted.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}
