//! Live presence: tickets, and the server-sent event stream (see `crate::stream`).

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use presence_model::shown;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{self, Authenticated};
use crate::errors::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::stream::{self, OpenError, Refused, StreamRequest};
use crate::tickets::TICKET_TTL;
use presence_model::ids::{Revision, UserId};

#[derive(Serialize, ToSchema)]
pub struct Ticket {
    /// Good once, for `expires_in` seconds, for the stream of the user who asked.
    ticket: String,
    expires_in: u64,
}

/// A single-use ticket to open the stream from a browser, whose `EventSource` cannot send
/// an `Authorization` header (a token never goes in a URL).
#[utoipa::path(post, path = "/api/presence/tickets/", tag = "stream", security(("bearer" = [])),
    responses(
        (status = 201, description = "A ticket, good once for 60 s while this session is \
            live; the user's oldest live ticket past `TICKETS_PER_USER` is invalidated",
            body = Ticket),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody),
        (status = 503, description = "Redis is unreachable; see `Retry-After`", body = ErrorBody)))]
pub async fn ticket(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let ticket = state
        .tickets
        .issue(caller.user_id, &caller.token_hash)
        .await?;
    Ok(HttpResponse::Created().json(Ticket {
        ticket,
        expires_in: TICKET_TTL.as_secs(),
    }))
}

/// Whose changes a stream carries when no `ids` are given.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every user (admins only).
    All,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated user ids, 1 to 500.
    #[param(pattern = "^-?[0-9]{1,18}(,-?[0-9]{1,18}){0,499}$")]
    ids: Option<String>,
    /// `all`: every user, for admins.
    #[param(inline)]
    scope: Option<Scope>,
    /// The `ticket` security scheme, for an `EventSource` that cannot send
    /// `Authorization: Bearer`: from `POST /api/presence/tickets/`, good once.
    ticket: Option<String>,
    /// Resume after this revision, for clients that cannot send `Last-Event-ID` (a new
    /// `EventSource`, opened with a new ticket); the header wins.
    #[param(minimum = 0)]
    #[param(value_type = Option<i64>)]
    last_event_id: Option<Revision>,
}

fn parse_ids(ids: &str) -> Result<Vec<UserId>, ApiError> {
    let invalid = |message: String| ApiError::Invalid {
        field: "ids".to_owned(),
        message,
    };
    let ids: Vec<UserId> = ids
        .split(',')
        .map(|id| {
            id.trim()
                .parse()
                .map(UserId)
                .map_err(|_| invalid(format!("{id:?} is not a user id")))
        })
        .collect::<Result<_, _>>()?;
    shown::check_bulk_ids(ids.len())?;
    let mut unique = ids;
    unique.sort_unstable();
    unique.dedup();
    Ok(unique)
}

/// The presence of some users, live: `text/event-stream`.
///
/// First `event: snapshot` ([`StreamSnapshot`](#/components/schemas/StreamSnapshot)), then
/// `event: presence` (`StreamChanges`) at most once per `STREAM_BATCH_MS`, each user's
/// latest status only, `id` being the revision; `event: resync` (`StreamResync`) followed
/// by a new snapshot when changes could not all be given; a comment every
/// `STREAM_KEEPALIVE_MS`. A reconnect with `Last-Event-ID` gets exactly the changes after
/// it, or, past `STREAM_RESUME_SECS`, `resync` and a snapshot. Statuses are what everyone
/// but admins and the user is shown. Open it with a bearer token (a fetch-based
/// `EventSource` can send the header, and then resumes by itself) or a ticket (a
/// browser's `EventSource`: a ticket is good once, so reconnect with a new ticket and
/// `last_event_id`). The stream ends when its session is logged out, or when a newer
/// stream of the same session takes its place at a limit. `HEAD` is 405.
#[utoipa::path(get, path = "/api/presence/stream/", tag = "stream", security(("bearer" = [])),
    params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]{1,18}$",
            description = "Resume after this revision: the `id` of the last event received \
                (an `EventSource` sends it by itself when it reconnects)")),
    responses(
        (status = 200, description = "The event stream, one `StreamEvent` at a time",
            content_type = "text/event-stream", body = String,
            headers(("Cache-Control" = String, description = "`no-cache, no-store`"))),
        (status = 400, description = "No ids, more than 500, not numbers, an unknown \
            parameter (a token in the URL, say)", body = ErrorBody),
        (status = 401, description = "`ticket_used` or `ticket_expired` (also unknown or \
            invalidated): get a new ticket; `unauthenticated` (no token or ticket, or the \
            session of either is logged out or expired): log in again", body = ErrorBody),
        (status = 403, description = "`scope=all` asked by a non-admin", body = ErrorBody),
        (status = 429, description = "Too many streams of this user; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "This process holds all the streams it may, or Redis \
            is unreachable; see `Retry-After`", body = ErrorBody)))]
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let StreamQuery {
        ids,
        scope,
        ticket,
        last_event_id: last_event_id_param,
    } = query.into_inner();
    let ids = match (ids, scope) {
        (Some(ids), None) => Some(parse_ids(&ids)?),
        (None, Some(Scope::All)) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give either `ids` or `scope`, not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(ApiError::Invalid {
                field: "ids".to_owned(),
                message: "give 1 to 500 user ids, or `scope=all`".to_owned(),
            });
        }
    };
    let caller = match ticket {
        Some(ticket) => {
            let redeemed = state.tickets.redeem(&ticket).await??;
            // The session that minted it must still be live (not logged out, not expired).
            let session = auth::live_session(&state, redeemed.token_hash.clone()).await?;
            if session.live.user_id != redeemed.user_id {
                return Err(ApiError::Unauthenticated);
            }
            Authenticated::new(&session.live, session.live.last_seen, redeemed.token_hash)
        }
        None => Authenticated::from_request(&req, &mut actix_web::dev::Payload::None).await?,
    };
    if ids.is_none() && !caller.is_admin {
        return Err(ApiError::Forbidden);
    }
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
        .or(last_event_id_param);
    let request = StreamRequest {
        user_id: caller.user_id,
        session: caller.token_hash,
        ids,
        last_event_id,
    };
    let body = stream::open(&state, request)
        .await
        .map_err(|error| match error {
            OpenError::Refused(Refused::TooManyForUser) => ApiError::TooManyRequests {
                what: "too many open streams of this user",
                retry_after_secs: 5,
            },
            OpenError::Refused(Refused::TooManyForProcess) => ApiError::Unavailable {
                reason: "this process holds all the streams it may",
            },
            OpenError::Unavailable(error) => error,
        })?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(CacheControl(vec![
            CacheDirective::NoCache,
            CacheDirective::NoStore,
        ]))
        // Proxies such as nginx must pass events on as they come.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
