//! The browser files the API serves from its binary: the operator page (`/admin/`) and
//! the chat frontend's client (`/static/presence-client.js`, with its TypeScript
//! declarations). No CDN, no build step.
//!
//! Every one goes out with a strict Content-Security-Policy (scripts and styles from
//! this origin only, no inline code, never framed) and `nosniff`.

use actix_web::HttpResponse;
use actix_web::http::header::{CacheControl, CacheDirective};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

fn file(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        // Versioned with the binary: a restart serves the new ones.
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .body(body)
}

/// The operator page.
#[utoipa::path(get, path = "/admin/", tag = "frontend",
    responses((status = 200, description = "The operator page", content_type = "text/html", body = String)))]
pub async fn admin_page() -> HttpResponse {
    file(
        "text/html; charset=utf-8",
        include_str!("../../static/admin/index.html"),
    )
}

/// The operator page's script.
#[utoipa::path(get, path = "/admin/app.js", tag = "frontend",
    responses((status = 200, description = "An ES module", content_type = "text/javascript", body = String)))]
pub async fn admin_script() -> HttpResponse {
    file(
        "text/javascript; charset=utf-8",
        include_str!("../../static/admin/app.js"),
    )
}

/// The operator page's charts (an ES module its script imports).
#[utoipa::path(get, path = "/admin/charts.js", tag = "frontend",
    responses((status = 200, description = "An ES module", content_type = "text/javascript", body = String)))]
pub async fn admin_charts() -> HttpResponse {
    file(
        "text/javascript; charset=utf-8",
        include_str!("../../static/admin/charts.js"),
    )
}

/// The operator page's style sheet.
#[utoipa::path(get, path = "/admin/app.css", tag = "frontend",
    responses((status = 200, description = "CSS", content_type = "text/css", body = String)))]
pub async fn admin_style() -> HttpResponse {
    file(
        "text/css; charset=utf-8",
        include_str!("../../static/admin/app.css"),
    )
}

/// The chat frontend's client: heartbeats, idle detection, live presence, status.
#[utoipa::path(get, path = "/static/presence-client.js", tag = "frontend",
    responses((status = 200, description = "An ES module", content_type = "text/javascript", body = String)))]
pub async fn presence_client() -> HttpResponse {
    file(
        "text/javascript; charset=utf-8",
        include_str!("../../static/presence-client.js"),
    )
}

/// The client's TypeScript declarations, beside it: `/// <reference path>` or copy them.
#[utoipa::path(get, path = "/static/presence-client.d.ts", tag = "frontend",
    responses((status = 200, description = "TypeScript declarations of presence-client.js",
        content_type = "text/plain", body = String)))]
pub async fn presence_client_types() -> HttpResponse {
    file(
        "text/plain; charset=utf-8",
        include_str!("../../static/presence-client.d.ts"),
    )
}
