//! The endpoints. Paths are declared without a trailing slash; `NormalizePath` (see
//! [`crate::startup`]) makes `/api/users/login/` and `/api/users/login` the same route.

use actix_web::{HttpResponse, Resource, web};

use crate::auth::HEARTBEAT_ROUTE;
use crate::errors::ApiError;

pub mod health;
pub mod users;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(
            web::scope("/api/users")
                .service(resource("/register").route(web::post().to(users::register)))
                .service(resource("/login").route(web::post().to(users::login)))
                .service(resource("/logout").route(web::post().to(users::logout)))
                .service(
                    resource("/heartbeat")
                        .name(HEARTBEAT_ROUTE)
                        .route(web::post().to(users::heartbeat)),
                )
                .service(resource("/me").route(web::get().to(users::me)))
                .service(resource("/online-count").route(web::get().to(users::online_count)))
                .service(resource("/all-users").route(web::get().to(users::all_users)))
                .service(resource("/{id}/status").route(web::get().to(users::status)))
                .service(
                    resource("/{id}/presence-history")
                        .route(web::get().to(users::presence_history)),
                ),
        );
}

/// A resource that answers a method it has no route for with the JSON 405.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// For paths no resource matches.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".to_owned()))
}
