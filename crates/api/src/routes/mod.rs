//! The endpoints. [`ENDPOINTS`] is the one list of them: [`configure`] registers exactly
//! these, and a test checks that the OpenAPI document describes each one.
//!
//! Paths are written as the frontend calls them, with a trailing slash; `NormalizePath`
//! (see [`crate::startup`]) makes `/api/users/login/` and `/api/users/login` one route.

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::{HttpResponse, Route, guard, web};

use presence_model::vocabulary::CountsAs;

use crate::errors::ApiError;

pub mod admin;
pub mod frontend;
pub mod health;
pub mod status;
pub mod stream;
pub mod users;

pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    /// What an authenticated request here counts as (the rule itself is the model's).
    pub counts_as: CountsAs,
    /// The handler, without a method guard: [`configure`] adds it (GET routes answer HEAD
    /// too, but for [`WITHOUT_HEAD`]).
    route: fn() -> Route,
}

impl Endpoint {
    /// The path as registered: without the trailing slash.
    pub fn pattern(&self) -> &'static str {
        match self.path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => self.path,
        }
    }
}

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: Method::GET,
        path: "/healthz",
        counts_as: CountsAs::Activity,
        route: || web::to(health::healthz),
    },
    Endpoint {
        method: Method::GET,
        path: "/readyz",
        counts_as: CountsAs::Activity,
        route: || web::to(health::readyz),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/openapi.json",
        counts_as: CountsAs::Activity,
        route: || web::to(crate::openapi::openapi_json),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/users/register/",
        counts_as: CountsAs::Activity,
        route: || web::to(users::register),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/users/login/",
        counts_as: CountsAs::Activity,
        route: || web::to(users::login),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/users/logout/",
        counts_as: CountsAs::Nothing,
        route: || web::to(users::logout),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/users/logout-all/",
        counts_as: CountsAs::Nothing,
        route: || web::to(users::logout_all),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/users/heartbeat/",
        counts_as: CountsAs::Heartbeat,
        route: || web::to(users::heartbeat),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/users/me/",
        counts_as: CountsAs::Activity,
        route: || web::to(users::me),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/users/online-count/",
        counts_as: CountsAs::Activity,
        route: || web::to(status::online_count),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/users/statuses/",
        counts_as: CountsAs::Activity,
        route: || web::to(status::statuses),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/users/me/status/",
        counts_as: CountsAs::Activity,
        route: || web::to(status::own_status),
    },
    Endpoint {
        method: Method::PUT,
        path: "/api/users/me/status/",
        counts_as: CountsAs::Activity,
        route: || web::to(status::set_status),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/users/all-users/",
        counts_as: CountsAs::Activity,
        route: || web::to(users::all_users),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/users/{id}/status/",
        counts_as: CountsAs::Activity,
        route: || web::to(status::status),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/presence/tickets/",
        counts_as: CountsAs::Activity,
        route: || web::to(stream::ticket),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/presence/stream/",
        counts_as: CountsAs::Activity,
        route: || web::to(stream::stream),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/admin/overview/",
        counts_as: CountsAs::Activity,
        route: || web::to(admin::overview),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/admin/history/",
        counts_as: CountsAs::Activity,
        route: || web::to(admin::history),
    },
    Endpoint {
        method: Method::GET,
        path: "/admin/",
        counts_as: CountsAs::Activity,
        route: || web::to(frontend::admin_page),
    },
    Endpoint {
        method: Method::GET,
        path: "/admin/app.js",
        counts_as: CountsAs::Activity,
        route: || web::to(frontend::admin_script),
    },
    Endpoint {
        method: Method::GET,
        path: "/admin/charts.js",
        counts_as: CountsAs::Activity,
        route: || web::to(frontend::admin_charts),
    },
    Endpoint {
        method: Method::GET,
        path: "/admin/app.css",
        counts_as: CountsAs::Activity,
        route: || web::to(frontend::admin_style),
    },
    Endpoint {
        method: Method::GET,
        path: "/static/presence-client.js",
        counts_as: CountsAs::Activity,
        route: || web::to(frontend::presence_client),
    },
    Endpoint {
        method: Method::GET,
        path: "/static/presence-client.d.ts",
        counts_as: CountsAs::Activity,
        route: || web::to(frontend::presence_client_types),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/users/{id}/presence-history/",
        counts_as: CountsAs::Activity,
        route: || web::to(users::presence_history),
    },
];

/// GET routes that do not answer HEAD (405): a HEAD of the stream would hold a stream's
/// place for an answer that never has a body to send.
const WITHOUT_HEAD: &[&str] = &["/api/presence/stream/"];

impl Endpoint {
    fn answers_head(&self) -> bool {
        self.method == Method::GET && !WITHOUT_HEAD.contains(&self.path)
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut by_pattern: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
    for endpoint in ENDPOINTS {
        by_pattern
            .entry(endpoint.pattern())
            .or_default()
            .push(endpoint);
    }
    for (pattern, endpoints) in by_pattern {
        let mut allow: Vec<Method> = Vec::new();
        for endpoint in &endpoints {
            allow.push(endpoint.method.clone());
            if endpoint.answers_head() {
                allow.push(Method::HEAD);
            }
        }
        let not_allowed = move || {
            let allow = allow.clone();
            async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) }
        };
        let resource = endpoints.iter().fold(
            web::resource(pattern)
                .app_data(endpoints[0].counts_as)
                .default_service(web::to(not_allowed)),
            |resource, endpoint| {
                let route = (endpoint.route)();
                resource.route(if endpoint.answers_head() {
                    // actix sends no body in answer to HEAD.
                    route.guard(guard::Any(guard::Get()).or(guard::Head()))
                } else {
                    route.method(endpoint.method.clone())
                })
            },
        );
        cfg.service(resource);
    }
}

/// For paths no resource matches.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".to_owned()))
}
