//! The OpenAPI 3 document, generated from the handlers' annotations and the types they
//! exchange, served at `GET /api/openapi.json`.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::errors::{ErrorBody, ErrorDetail};
use crate::routes::{admin, frontend, health, status, stream, users};

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
        openapi_json,
        users::register,
        users::login,
        users::logout,
        users::logout_all,
        users::heartbeat,
        users::me,
        status::online_count,
        users::all_users,
        status::status,
        status::statuses,
        status::own_status,
        status::set_status,
        users::presence_history,
        stream::ticket,
        stream::stream,
        admin::overview,
        frontend::admin_page,
        frontend::admin_script,
        frontend::admin_style,
        frontend::presence_client,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth, &CommonResponses),
    tags(
        (name = "users", description = "Accounts, sessions and presence"),
        (name = "status", description = "Statuses: presence, manual availability, custom status"),
        (name = "stream", description = "Live presence: server-sent events, and their tickets"),
        (name = "admin", description = "The operator page's data"),
        (name = "frontend", description = "The operator page and the chat frontend's client, \
            served from the binary"),
        (name = "operations", description = "Health, readiness, this document (metrics are served \
            on METRICS_LISTEN_ADDR, apart from the API)"),
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

/// The answers every route of a kind can give, added once here rather than on each
/// handler: the error policy of `errors.rs`, as the document states it.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.delete, false),
            ];
            for (operation, may_have_body) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                };
                add("405", "Another method than this path takes (see `Allow`)");
                if may_have_body {
                    add("400", "Malformed JSON, or an invalid field");
                    add(
                        "408",
                        "The body did not arrive within `CLIENT_BODY_TIMEOUT_MS`",
                    );
                    add("413", "Body over 16 KiB");
                    add("415", "Body is not JSON");
                }
                if operation.security.is_some() {
                    add("401", "Missing, unknown, expired or revoked token");
                }
                if path.starts_with("/api/users/") {
                    add("503", "The database is unavailable; see `Retry-After`");
                }
            }
        }
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
