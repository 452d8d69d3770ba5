//! The OpenAPI 3 document, generated from the handlers' annotations and the types they
//! exchange, served at `GET /api/openapi.json`.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::errors::{ErrorBody, ErrorDetail};
use crate::routes::{health, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "presence",
        description = "Which users of the chat app are online. Authenticated endpoints take \
                       `Authorization: Bearer <token>` (from login), and each such request \
                       counts as activity. Every path also works without its trailing slash."
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        openapi_json,
        users::register,
        users::login,
        users::logout,
        users::heartbeat,
        users::me,
        users::online_count,
        users::all_users,
        users::status,
        users::presence_history,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Accounts, sessions and presence"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!(r#"{{"error": "could not render the document: {e}"}}"#))
});

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}
