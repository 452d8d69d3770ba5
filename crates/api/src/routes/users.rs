//! The chat frontend's and the admin panel's endpoints.

use actix_web::http::header::{CacheControl, CacheDirective, ETag, EntityTag, IfNoneMatch};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use presence_model::directory;
use presence_model::directory::{ListedUser, UserQuery};
use presence_model::events::Transition;
use presence_model::feed;
use presence_model::users::Me;
use presence_model::vocabulary::Presence;
use presence_model::{OnlineStatus, sessions, users};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::admission::Attempt;
use crate::auth::{Admin, Authenticated, HeartbeatBody};
use crate::errors::{ApiError, ErrorBody};
use crate::extract::JsonBody;
use crate::state::{AppState, blocking, db, publish_soon};
use presence_model::ids::UserId;

/// No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3–150 letters, digits and `@ . + - _`; case-insensitively unique.
    #[schema(
        example = "alice",
        min_length = 3,
        max_length = 150,
        pattern = "^[A-Za-z0-9@.+_-]+$"
    )]
    username: String,
    /// 8 to 1024 characters.
    #[schema(example = "correct horse battery", min_length = 8, max_length = 1024)]
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// The bearer token of the new session: send it as `Authorization: Bearer <token>`.
    token: String,
    user: Me,
}

#[derive(Serialize, ToSchema)]
pub struct HeartbeatResponse {
    /// Always `online`: a heartbeat connects.
    online_status: OnlineStatus,
    last_seen: Option<DateTime<Utc>>,
    /// How often to send the heartbeat (milliseconds): the server's setting.
    heartbeat_interval_ms: i64,
    /// After how long without use a client should report `{"active": false}` (seconds).
    away_after_secs: u32,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    /// Ordered by id.
    users: Vec<ListedUser>,
    /// How many users this page holds.
    count: usize,
    /// Pass as `cursor` to get the next page; `null` when no user follows this page.
    #[schema(pattern = "^[0-9]{1,18}$")]
    next: Option<String>,
    /// Pass as `changed_since` on the next poll: every change this page could not see
    /// happened at or after it.
    as_of: DateTime<Utc>,
}

/// Page size when no `limit` is given, and the largest allowed.
const USERS_DEFAULT_LIMIT: i64 = 1000;
const USERS_MAX_LIMIT: i64 = 10_000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AllUsersQuery {
    /// Only users shown with this status (`online`: online, away or dnd).
    status: Option<OnlineStatus>,
    /// Only users with this presence.
    presence: Option<Presence>,
    /// Only users whose name starts with this (case-insensitive).
    #[param(max_length = 150)]
    search: Option<String>,
    /// Users per page: 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<i64>,
    /// The `next` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    cursor: Option<String>,
    /// RFC 3339, the previous page's `as_of`: only users whose status as admins are shown
    /// it (presence, `last_seen`, custom status, dnd end, invisibility) changed at or
    /// after it, by a write or by time alone (the window, the away timeout, an end). Users
    /// left alone never come back; one changed while a transaction older than the read was
    /// open (a sweep, at most a few seconds) may come back once more.
    changed_since: Option<DateTime<Utc>>,
}

/// Newest transitions returned when no `limit` is given, and the most ever returned.
const HISTORY_DEFAULT_LIMIT: i64 = 50;
const HISTORY_MAX_LIMIT: i64 = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many transitions, newest first: 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct History {
    user_id: UserId,
    events: Vec<Transition>,
}

/// Create an account.
#[utoipa::path(post, path = "/api/users/register/", tag = "users", request_body = Credentials,
    responses(
        (status = 201, description = "Created", body = Me),
        (status = 400, description = "Malformed JSON or an invalid field", body = ErrorBody),
        (status = 409, description = "The username is taken", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address, or for the \
            whole service; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "Too many password hashes queued, or the database is \
            unavailable; see `Retry-After`", body = ErrorBody)))]
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    JsonBody(Credentials { username, password }): JsonBody<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let address = req.peer_addr().map(|peer| peer.ip());
    state
        .admission
        .admit(Attempt::Registration, address)
        .await?;
    let _slot = state.hashing.registration_slot().await?;
    let (pool, timings) = (state.pool.clone(), state.policy().timings());
    let user = blocking(move || users::register(&pool, timings, &username, &password)).await?;
    Ok(HttpResponse::Created().json(user))
}

/// Log in: opens a session (one per device or tab) and marks the user online.
///
/// Failed logins are limited per account and per client address (see the README); past
/// the limit every login of that account or address is refused with 429 until the window
/// ends, without checking the password.
#[utoipa::path(post, path = "/api/users/login/", tag = "users", request_body = Credentials,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Malformed JSON, or a username that breaks the rule", body = ErrorBody),
        (status = 401, description = "Unknown username or wrong password", body = ErrorBody),
        (status = 429, description = "Too many failed logins for this account or address, or \
            too many logins from this address or for the whole service; see `Retry-After`",
            body = ErrorBody),
        (status = 503, description = "Too many password hashes queued, or the database is \
            unavailable; see `Retry-After`", body = ErrorBody)))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    JsonBody(Credentials { username, password }): JsonBody<Credentials>,
) -> Result<HttpResponse, ApiError> {
    users::validate_username(&username)?;
    let address = req.peer_addr().map(|peer| peer.ip());
    let throttle = &state.login_throttle;
    throttle.check(&username, address).await?;
    state.admission.admit(Attempt::Login, address).await?;
    let slot = state.hashing.login_slot().await?;
    let (pool, account, timings) = (
        state.pool.clone(),
        username.clone(),
        state.policy().timings(),
    );
    let outcome = blocking(move || users::log_in(&pool, timings, &account, &password)).await;
    drop(slot);
    let logged_in = match outcome {
        Ok(logged_in) => logged_in,
        Err(ApiError::InvalidCredentials) => {
            throttle.record_failure(&username, address).await;
            return Err(ApiError::InvalidCredentials);
        }
        Err(e) => return Err(e),
    };
    throttle.clear(&username).await;
    state.wrote_user(logged_in.user.id());
    publish_soon(&state, logged_in.presence.transition.as_ref()).await;
    Ok(HttpResponse::Ok().json(LoginResponse {
        token: logged_in.token.expose().to_owned(),
        user: logged_in.user,
    }))
}

/// Log out this session; the user goes offline unless another session of theirs is live.
#[utoipa::path(post, path = "/api/users/logout/", tag = "users", security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody)))]
pub async fn logout(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let (session_id, timings) = (caller.session_id, state.policy().timings());
    let logged_out = db(&state, move |conn| {
        sessions::log_out(conn, timings, session_id)
    })
    .await?;
    // Here at once; other replicas as the NOTIFY of the revocation reaches them.
    state.revoke_session(&caller.token_hash);
    state.wrote_user(caller.user_id);
    let change = logged_out.and_then(|out| out.presence.transition);
    publish_soon(&state, change.as_ref()).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Log out everywhere: every session of the caller ends (on every replica, with its
/// streams and tickets), and the user goes offline.
#[utoipa::path(post, path = "/api/users/logout-all/", tag = "users", security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session of the caller is logged out"),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody)))]
pub async fn logout_all(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let (user_id, timings) = (caller.user_id, state.policy().timings());
    let logged_out = db(&state, move |conn| {
        sessions::log_out_everywhere(conn, timings, user_id)
    })
    .await?;
    // The caller's own at once; the others as the NOTIFYs reach this and every replica.
    state.revoke_session(&caller.token_hash);
    state.wrote_user(caller.user_id);
    let change = logged_out.and_then(|out| out.presence.transition);
    publish_soon(&state, change.as_ref()).await;
    Ok(HttpResponse::NoContent().finish())
}

/// The app's heartbeat, every `heartbeat_interval_ms`. Authenticating already refreshed
/// `last_seen` and brought the user online; the body says whether the user really used
/// the app since the last one (no body: they did).
#[utoipa::path(post, path = "/api/users/heartbeat/", tag = "users", security(("bearer" = [])),
    request_body(content = Option<HeartbeatBody>, description = "Optional: `{\"active\": false}` \
        when the page is hidden or untouched for the away timeout"),
    responses(
        (status = 200, description = "Connected", body = HeartbeatResponse),
        (status = 400, description = "Malformed JSON or an unknown field", body = ErrorBody),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody)))]
pub async fn heartbeat(state: web::Data<AppState>, caller: Authenticated) -> HttpResponse {
    HttpResponse::Ok().json(HeartbeatResponse {
        online_status: OnlineStatus::Online,
        last_seen: caller.last_seen,
        heartbeat_interval_ms: state.policy().heartbeat_interval().num_milliseconds(),
        away_after_secs: state.policy().timings().away_after_secs,
    })
}

/// The caller, with their own status (`availability` included).
#[utoipa::path(get, path = "/api/users/me/", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody)))]
pub async fn me(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let (timings, user_id) = (state.policy().timings(), caller.user_id);
    let record = state
        .user_record(user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let user = record.me(timings, presence_model::clock::now());
    Ok(HttpResponse::Ok().json(user))
}

/// The admin panel's poll: every user, fresh from the database, never cached on the way.
#[utoipa::path(get, path = "/api/users/all-users/", tag = "users", security(("bearer" = [])),
    params(AllUsersQuery,
        ("If-None-Match" = Option<String>, Header,
            description = "The `ETag` of a page read before: 304 if it is unchanged")),
    responses(
        (status = 200, description = "A page of users ordered by id", body = UserList,
            headers(
                ("ETag" = String, description = "Of the page's users and `next`"),
                ("Cache-Control" = String, description = "`no-store`"))),
        (status = 304, description = "Unchanged since the `If-None-Match` ETag; no body",
            headers(
                ("ETag" = String, description = "The same as asked"),
                ("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody)))]
pub async fn all_users(
    req: HttpRequest,
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<AllUsersQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = page_limit(query.limit, USERS_DEFAULT_LIMIT, USERS_MAX_LIMIT)?;
    let after_id = match query.cursor.as_deref().map(str::parse::<UserId>) {
        None => None,
        Some(Ok(id)) if id >= UserId(0) => Some(id),
        Some(_) => {
            return Err(ApiError::Invalid {
                field: "cursor".to_owned(),
                message: "is not a cursor this API returned".to_owned(),
            });
        }
    };
    let user_query = UserQuery {
        status: query.status,
        presence: query.presence,
        name_prefix: query.search.filter(|search| !search.is_empty()),
        changed_since: query.changed_since,
        after_id,
        limit,
    };
    let timings = state.policy().timings();
    let page = db(&state, move |conn| {
        directory::list_users(conn, timings, &user_query)
    })
    .await?;
    let list = UserList {
        count: page.users.len(),
        users: page.users,
        next: page.next_after_id.map(|id| id.to_string()),
        as_of: page.as_of,
    };
    let etag = EntityTag::new_strong(content_hash(&list)?);
    let unchanged = matches!(
        req.get_header::<IfNoneMatch>(),
        Some(IfNoneMatch::Items(tags)) if tags.iter().any(|tag| tag.strong_eq(&etag))
    );
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .insert_header(ETag(etag));
    Ok(if unchanged {
        response.finish()
    } else {
        response.json(list)
    })
}

/// The `limit` query parameter: `default` when absent, else 1 to `max`.
fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::Invalid {
            field: "limit".to_owned(),
            message: format!("must be between 1 and {max}"),
        })
    }
}

/// The ETag of a user list: a hash of what it holds, leaving out `as_of` (which changes
/// on every read), so an unchanged list answers 304.
fn content_hash(list: &UserList) -> Result<String, ApiError> {
    let content = serde_json::to_vec(&(&list.users, &list.next)).map_err(ApiError::internal)?;
    let digest = Sha256::digest(content);
    Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// A user's transitions as others were told them, newest first: for admins, and for the
/// user.
#[utoipa::path(get, path = "/api/users/{id}/presence-history/", tag = "users",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id"), HistoryQuery),
    responses(
        (status = 200, description = "The transitions", body = History),
        (status = 400, description = "Invalid id or limit", body = ErrorBody),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody),
        (status = 403, description = "Neither an admin nor that user", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody)))]
pub async fn presence_history(
    state: web::Data<AppState>,
    caller: Authenticated,
    user_id: web::Path<UserId>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id.into_inner();
    if !caller.is_admin && caller.user_id != user_id {
        return Err(ApiError::Forbidden);
    }
    let limit = page_limit(query.limit, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)?;
    let events = db(&state, move |conn| {
        feed::presence_history(conn, user_id, limit)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no user with id {user_id}")))?;
    Ok(HttpResponse::Ok().json(History { user_id, events }))
}
