use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use presence_model::jobs::{ChangeReason, PresenceChanged};
use presence_model::users::User;
use presence_model::{OnlineStatus, events, presence, sessions, users};
use serde::{Deserialize, Serialize};

use crate::auth::{Admin, Authenticated};
use crate::errors::ApiError;
use crate::extract::JsonBody;
use crate::state::{AppState, blocking, db};

/// No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct LoginResponse<'a> {
    token: &'a str,
    user: &'a User,
}

#[derive(Serialize)]
struct HeartbeatResponse {
    online_status: OnlineStatus,
    last_seen: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct Count {
    count: i64,
}

#[derive(Serialize)]
struct UserList {
    users: Vec<User>,
    count: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllUsersQuery {
    status: Option<OnlineStatus>,
}

/// Newest transitions returned when no `limit` is given, and the most ever returned.
const HISTORY_DEFAULT_LIMIT: i64 = 50;
const HISTORY_MAX_LIMIT: i64 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<i64>,
}

#[derive(Serialize)]
struct History {
    user_id: i64,
    events: Vec<PresenceChanged>,
}

pub async fn register(
    state: web::Data<AppState>,
    JsonBody(Credentials { username, password }): JsonBody<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let user = blocking(move || users::register(&state.pool, &username, &password)).await?;
    Ok(HttpResponse::Created().json(user))
}

pub async fn login(
    state: web::Data<AppState>,
    JsonBody(Credentials { username, password }): JsonBody<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let pool = state.pool.clone();
    let logged_in = blocking(move || users::log_in(&pool, &username, &password)).await?;
    let change = logged_in.update.change(ChangeReason::Login);
    state.queue.enqueue(change).await;
    Ok(HttpResponse::Ok().json(LoginResponse {
        token: logged_in.token.expose(),
        user: &logged_in.update.user,
    }))
}

pub async fn logout(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let (session_id, window) = (caller.session_id, state.offline_after);
    let update = db(&state, move |conn| {
        sessions::log_out(conn, session_id, window)
    })
    .await?;
    let change = update.and_then(|update| update.change(ChangeReason::Logout));
    state.queue.enqueue(change).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Authenticating already refreshed `last_seen` and brought the user online.
pub async fn heartbeat(caller: Authenticated) -> HttpResponse {
    let user = caller.user();
    HttpResponse::Ok().json(HeartbeatResponse {
        online_status: user.online_status,
        last_seen: user.last_seen,
    })
}

pub async fn me(caller: Authenticated) -> HttpResponse {
    HttpResponse::Ok().json(caller.user())
}

pub async fn status(
    state: web::Data<AppState>,
    _caller: Authenticated,
    user_id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, window) = (user_id.into_inner(), state.offline_after);
    let status = db(&state, move |conn| {
        presence::get_user_online_status(conn, user_id, window)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no user with id {user_id}")))?;
    Ok(HttpResponse::Ok().json(status))
}

pub async fn online_count(
    state: web::Data<AppState>,
    _caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let window = state.offline_after;
    let count = db(&state, move |conn| {
        presence::get_online_users_count(conn, window)
    })
    .await?;
    Ok(HttpResponse::Ok().json(Count { count }))
}

/// The admin panel's poll: always fresh from the database, never cached on the way.
pub async fn all_users(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<AllUsersQuery>,
) -> Result<HttpResponse, ApiError> {
    let (status, window) = (query.status, state.offline_after);
    let users = db(&state, move |conn| users::all_users(conn, window, status)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(UserList {
            count: users.len(),
            users,
        }))
}

/// A user's transitions, newest first: for admins, and for the user themselves.
pub async fn presence_history(
    state: web::Data<AppState>,
    caller: Authenticated,
    user_id: web::Path<i64>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id.into_inner();
    if !caller.user().is_admin && caller.user().id != user_id {
        return Err(ApiError::Forbidden);
    }
    let limit = query.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
    if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Invalid {
            field: "limit".to_owned(),
            message: format!("must be between 1 and {HISTORY_MAX_LIMIT}"),
        });
    }
    let events = db(&state, move |conn| {
        events::presence_history(conn, user_id, limit)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no user with id {user_id}")))?;
    Ok(HttpResponse::Ok().json(History { user_id, events }))
}
