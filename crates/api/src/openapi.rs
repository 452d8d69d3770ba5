//! The OpenAPI 3.1 document, served at `GET /api/openapi.json`: generated from the
//! handlers' annotations and the types they exchange (utoipa), then made exact here, once
//! for every route, where utoipa cannot say what the server does:
//!
//! - **Every field of an answer is sent** (`null` when empty): each object schema that
//!   only answers carry lists all its properties as `required`.
//! - **An optional body may be left out**: utoipa writes an `Option<T>` body as
//!   `oneOf [null, T]`; it becomes `T`, not required.
//! - **The answers every route of a kind gives** (the error policy of `errors.rs`): 405
//!   with `Allow` everywhere; 400, 408, 413 and 415 where a body is read; 401 where a
//!   token is; 503 with `Retry-After` where the database is; `Retry-After` on every 429.
//! - **The stream** is authenticated by a bearer token or a ticket (an `apiKey` in the
//!   query), and its `text/event-stream` answer is described one event at a time
//!   ([`StreamEvent`]: `event`, `id`, and `data` holding JSON of a named schema).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use actix_web::HttpResponse;
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::errors::{ErrorBody, ErrorCode, ErrorDetail};
use crate::routes::{admin, frontend, health, status, stream, users};
use crate::stream::{ChangesData, ResyncData, ResyncReason, SnapshotData};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "presence",
        description = "Which users of the chat app are online. Authenticated endpoints take \
                       `Authorization: Bearer <token>` (from login), and each such request \
                       counts as activity. Every path also works without its trailing slash. \
                       Every field of an answer is always sent, `null` when empty."
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
        admin::history,
        frontend::admin_page,
        frontend::admin_script,
        frontend::admin_charts,
        frontend::admin_style,
        frontend::presence_client,
        frontend::presence_client_types,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        ErrorCode,
        SnapshotData<'static>,
        ChangesData<'static>,
        ResyncData,
        ResyncReason
    )),
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

/// The stream's path, whose authentication and answer are described here.
const STREAM_PATH: &str = "/api/presence/stream/";

/// The document as served.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi())
        .unwrap_or_else(|e| json!({ "error": format!("could not render the document: {e}") }));
    add_security_schemes(&mut doc);
    add_stream_event(&mut doc);
    for_each_operation(&mut doc, |path, operation| {
        optional_bodies(operation);
        common_responses(path, operation);
        if path == STREAM_PATH {
            stream_operation(operation);
        }
    });
    if let Some(operation) = doc.pointer_mut("/paths/~1api~1openapi.json/get") {
        operation["responses"]["200"]["content"]["application/json"]["schema"] = json!({
            "type": "object",
            "description": "An OpenAPI 3.1 document",
            "properties": {
                "openapi": { "type": "string" },
                "info": { "type": "object" },
                "paths": { "type": "object" },
                "components": { "type": "object" },
            },
        });
    }
    require_answered_fields(&mut doc);
    doc
}

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string_pretty(&document()).unwrap_or_default());

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

fn add_security_schemes(doc: &mut Value) {
    doc["components"]["securitySchemes"] = json!({
        "bearer": { "type": "http", "scheme": "bearer",
                    "description": "The token of a session, from login" },
        "ticket": { "type": "apiKey", "in": "query", "name": "ticket",
                    "description": "A single-use ticket from `POST /api/presence/tickets/`, \
                                    for an `EventSource` that cannot send a header" },
    });
}

/// One server-sent event of the stream, as OpenAPI 3.2 describes an item of a
/// `text/event-stream` body: its `data` is JSON of the schema its `event` names.
fn add_stream_event(doc: &mut Value) {
    let event = |name: &str, schema: &str, id: bool, description: &str| {
        let mut properties = json!({
            "event": { "const": name },
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": { "$ref": format!("#/components/schemas/{schema}") },
            },
        });
        let mut required = vec!["event", "data"];
        if id {
            properties["id"] = json!({
                "type": "string", "pattern": "^[0-9]{1,18}$",
                "description": "The revision, sent back as `Last-Event-ID` on a reconnect",
            });
            required.push("id");
        }
        json!({
            "type": "object",
            "title": format!("{name} event"),
            "description": description,
            "required": required,
            "properties": properties,
        })
    };
    doc["components"]["schemas"]["StreamEvent"] = json!({
        "description": "One event of the stream (a comment line every `STREAM_KEEPALIVE_MS` \
                        and a `retry:` line at the start carry no event)",
        "oneOf": [
            event("snapshot", "StreamSnapshot", true,
                  "The watched users' statuses: first, and after every `resync`"),
            event("presence", "StreamChanges", true,
                  "The latest status of each user that changed"),
            event("resync", "StreamResync", false,
                  "Changes could not all be given; a `snapshot` follows"),
        ],
    });
}

fn for_each_operation(doc: &mut Value, mut visit: impl FnMut(&str, &mut Value)) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if matches!(method.as_str(), "get" | "post" | "put" | "delete" | "patch") {
                visit(path, operation);
            }
        }
    }
}

/// `oneOf [null, T]` as a body schema means "no body, or T": say so with `required`.
fn optional_bodies(operation: &mut Value) {
    let Some(body) = operation.get_mut("requestBody") else {
        return;
    };
    let Some(content) = body["content"].as_object_mut() else {
        return;
    };
    let mut optional = false;
    for media in content.values_mut() {
        let Some(alternatives) = media["schema"]["oneOf"].as_array() else {
            continue;
        };
        let (nulls, others): (Vec<&Value>, Vec<&Value>) = alternatives
            .iter()
            .partition(|schema| schema["type"] == "null");
        if nulls.len() == 1 && others.len() == 1 {
            media["schema"] = others[0].clone();
            optional = true;
        }
    }
    if optional {
        body["required"] = json!(false);
    }
}

fn error_response(description: &str, headers: Value) -> Value {
    let mut response = json!({
        "description": description,
        "content": { "application/json": {
            "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
    });
    if headers.as_object().is_some_and(|h| !h.is_empty()) {
        response["headers"] = headers;
    }
    response
}

fn retry_after() -> Value {
    json!({ "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": { "type": "integer", "minimum": 0 } } })
}

/// The answers of the error policy (see `errors.rs`) each route can give.
fn common_responses(path: &str, operation: &mut Value) {
    let reads_body = operation.get("requestBody").is_some();
    let authenticated = operation["security"]
        .as_array()
        .is_some_and(|alternatives| alternatives.iter().any(|a| a.get("bearer").is_some()));
    let Some(responses) = operation["responses"].as_object_mut() else {
        return;
    };
    let mut add = |status: &str, description: &str, headers: Value| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description, headers));
    };
    add(
        "405",
        "Another method than this path takes",
        json!({ "Allow": { "description": "The methods this path takes",
                           "schema": { "type": "string" } } }),
    );
    if reads_body {
        add("400", "Malformed JSON, or an invalid field", json!({}));
        add(
            "408",
            "The body did not arrive within `CLIENT_BODY_TIMEOUT_MS`",
            json!({}),
        );
        add("413", "Body over 16 KiB", json!({}));
        add("415", "Body is not JSON", json!({}));
    }
    if authenticated {
        add(
            "401",
            "Missing, unknown, expired or revoked token (`unauthenticated`)",
            json!({}),
        );
    }
    if path.starts_with("/api/users/") {
        add(
            "503",
            "The database is unavailable; see `Retry-After`",
            retry_after(),
        );
    }
    for status in ["429", "503"] {
        if let Some(response) = responses.get_mut(status) {
            response["headers"]["Retry-After"] = retry_after()["Retry-After"].clone();
        }
    }
}

/// The stream: a token or a ticket, and an answer described event by event.
fn stream_operation(operation: &mut Value) {
    operation["security"] = json!([{ "bearer": [] }, { "ticket": [] }]);
    operation["responses"]["200"]["content"]["text/event-stream"]["schema"] =
        json!({ "$ref": "#/components/schemas/StreamEvent" });
}

/// Marks every property of every object schema that only answers carry as `required`:
/// the server sends every field of an answer (`null` when empty). Schemas a request body
/// or parameter uses keep utoipa's reading (`Option` fields may be left out).
fn require_answered_fields(doc: &mut Value) {
    let mut answered = BTreeSet::new();
    let mut asked = BTreeSet::new();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for operation in item.values_mut() {
                if let Some(body) = operation.get("requestBody") {
                    collect_refs(body, &mut asked);
                }
                if let Some(parameters) = operation.get("parameters") {
                    collect_refs(parameters, &mut asked);
                }
                if let Some(responses) = operation.get_mut("responses") {
                    collect_refs(responses, &mut answered);
                    require_all(responses);
                }
            }
        }
    }
    let schemas = doc["components"]["schemas"].clone();
    let answered = reachable(&schemas, answered);
    let asked = reachable(&schemas, asked);
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (name, schema) in schemas.iter_mut() {
            if answered.contains(name) && !asked.contains(name) {
                require_all(schema);
            }
        }
    }
}

/// The names of the component schemas `value` refers to.
fn collect_refs(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            if let Some(name) = object
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                names.insert(name.to_owned());
            }
            object.values().for_each(|v| collect_refs(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, names)),
        _ => {}
    }
}

/// `roots` and every schema they refer to, transitively.
fn reachable(schemas: &Value, roots: BTreeSet<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let mut referred = BTreeSet::new();
        collect_refs(&schemas[&name], &mut referred);
        todo.extend(referred.into_iter().filter(|n| !seen.contains(n)));
    }
    seen
}

/// Every object schema inside `value` (inline ones, and the parts of an `allOf`) lists all
/// its properties as required. A `contentSchema` (the stream's `data`) is left alone.
fn require_all(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Object(properties)) = object.get("properties") {
                let names: Vec<Value> = properties.keys().cloned().map(Value::String).collect();
                object.insert("required".to_owned(), Value::Array(names));
            }
            for (key, child) in object.iter_mut() {
                if key != "contentSchema" && key != "headers" {
                    require_all(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(require_all),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_schemas_require_every_field_and_asked_ones_do_not() {
        let doc = document();
        let schema = |name: &str| doc["components"]["schemas"][name].clone();
        let required = |schema: &Value| -> BTreeSet<String> {
            schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let properties = |schema: &Value| -> BTreeSet<String> {
            schema["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        // A schema's own object, or the inline objects of its `allOf` (its other parts are
        // references to schemas listed here too).
        let objects = |schema: Value| -> Vec<Value> {
            match schema["allOf"].as_array() {
                Some(parts) => parts
                    .iter()
                    .filter(|part| part.get("$ref").is_none())
                    .cloned()
                    .collect(),
                None => vec![schema],
            }
        };
        for name in [
            "PublicStatus",
            "StatusDetails",
            "HeartbeatResponse",
            "Transition",
            "ErrorDetail",
        ] {
            let objects = objects(schema(name));
            assert!(!objects.is_empty(), "{name}");
            for object in objects {
                assert_eq!(required(&object), properties(&object), "{name}");
            }
        }
        let update = schema("StatusUpdate");
        assert!(required(&update).is_empty(), "{update}");
        let heartbeat = &doc["paths"]["/api/users/heartbeat/"]["post"]["requestBody"];
        assert_eq!(heartbeat["required"], false);
        assert_eq!(
            heartbeat["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/HeartbeatBody"
        );
    }

    #[test]
    fn bodyless_routes_list_no_body_errors() {
        let doc = document();
        for path in [
            "/api/presence/tickets/",
            "/api/users/logout/",
            "/api/users/logout-all/",
        ] {
            let responses = doc["paths"][path]["post"]["responses"].as_object().unwrap();
            for status in ["400", "408", "413", "415"] {
                assert!(!responses.contains_key(status), "{path} {status}");
            }
        }
    }
}
