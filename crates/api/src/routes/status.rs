//! Statuses: one user's, many users' at once, the counts, and the caller's own manual
//! status. Lookups answer what everyone but admins and the user is shown
//! (`ShownRow::shown_to_others`), whoever asks: admins read the truth from the admins'
//! list, users their own from `/me`.

use std::collections::HashSet;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use presence_model::counts::PresenceCounts;
use presence_model::manual;
use presence_model::manual::{StatusUpdate, Update};
use presence_model::shown::{self, ShownRow};
use presence_model::users::UserRecord;
use presence_model::views::{OwnStatus, PublicStatus};
use presence_model::vocabulary::Availability;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::errors::{ApiError, ErrorBody};
use crate::extract::JsonBody;
use crate::state::{AppState, db, publish_soon};
use presence_model::ids::UserId;

/// One user's status, as everyone but admins and the user is shown it.
#[utoipa::path(get, path = "/api/users/{id}/status/", tag = "status", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "The status", body = PublicStatus),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody)))]
pub async fn status(
    state: web::Data<AppState>,
    _caller: Authenticated,
    user_id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id.into_inner();
    let record = state
        .user_record(user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user with id {user_id}")))?;
    Ok(HttpResponse::Ok().json(shown_now(&state, &record).shown_to_others()))
}

/// The caller's own status (with their `availability` and its end).
#[utoipa::path(get, path = "/api/users/me/status/", tag = "status", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's status", body = OwnStatus),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody)))]
pub async fn own_status(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let record = state
        .user_record(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(HttpResponse::Ok().json(shown_now(&state, &record).shown_to_self()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusesQuery {
    /// 1 to 500 user ids.
    #[schema(value_type = Vec<i64>, min_items = 1, max_items = 500)]
    ids: Vec<JsonUserId>,
}

/// A user id in a JSON body: an integer, which JSON Schema lets be written `7.0` too.
pub struct JsonUserId(UserId);

impl<'de> Deserialize<'de> for JsonUserId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        number
            .as_i64()
            .or_else(|| {
                number
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 2f64.powi(53))
                    .map(|f| f as i64)
            })
            .map(|id| JsonUserId(UserId(id)))
            .ok_or_else(|| serde::de::Error::custom(format!("{number} is not a user id")))
    }
}

#[derive(Serialize, ToSchema)]
pub struct Statuses {
    /// The known users' statuses, in the order asked.
    statuses: Vec<PublicStatus>,
    /// The ids asked for that are no user's.
    missing: Vec<UserId>,
}

/// The statuses of up to 500 users, from memory or read with what concurrent requests miss, as everyone but admins and each user
/// is shown them.
#[utoipa::path(post, path = "/api/users/statuses/", tag = "status", security(("bearer" = [])),
    request_body = StatusesQuery,
    responses(
        (status = 200, description = "The statuses in the order asked, and the unknown ids",
            body = Statuses),
        (status = 400, description = "No ids, more than 500, or one that is not an integer",
            body = ErrorBody),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody)))]
pub async fn statuses(
    state: web::Data<AppState>,
    _caller: Authenticated,
    JsonBody(StatusesQuery { ids }): JsonBody<StatusesQuery>,
) -> Result<HttpResponse, ApiError> {
    let ids: Vec<UserId> = ids.into_iter().map(|JsonUserId(id)| id).collect();
    shown::check_bulk_ids(ids.len())?;
    let records = state.user_records(&ids).await?;
    let mut statuses = Vec::with_capacity(ids.len());
    // Each missing id once, in the order first asked.
    let mut missing = Vec::new();
    let mut reported = HashSet::new();
    for id in ids {
        match records.get(&id) {
            Some(record) => statuses.push(shown_now(&state, record).shown_to_others()),
            None if reported.insert(id) => missing.push(id),
            None => {}
        }
    }
    Ok(HttpResponse::Ok().json(Statuses { statuses, missing }))
}

/// What `record` shows now (by the database's clock), under the timings in force.
fn shown_now(state: &AppState, record: &UserRecord) -> ShownRow {
    record.shown_at(state.policy().timings(), presence_model::clock::now())
}

/// How many users are online, away and in do-not-disturb (an invisible user is not
/// counted); `count` is their sum, what older clients read as "online".
#[utoipa::path(get, path = "/api/users/online-count/", tag = "status", security(("bearer" = [])),
    responses(
        (status = 200, description = "The counts", body = PresenceCounts),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody)))]
pub async fn online_count(
    state: web::Data<AppState>,
    _caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let timings = state.policy().timings();
    let counts = db(&state, move |conn| {
        presence_model::counts::presence_counts(conn, timings)
    })
    .await?;
    Ok(HttpResponse::Ok().json(counts))
}

/// A field that may be given as `null`: `Some(None)` then, `None` when left out.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The caller's manual status; fields left out keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StatusUpdate)]
pub struct StatusUpdateBody {
    /// `auto` leaves presence to activity; `away` and `dnd` show while connected;
    /// `invisible` shows everyone else a logged-out user.
    availability: Option<Availability>,
    /// RFC 3339, in the future: when an `away` or `dnd` ends (back to `auto`). Only with
    /// `availability`; `null` or left out: no end.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    until: Option<Option<DateTime<Utc>>>,
    /// Up to 100 characters; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 100)]
    text: Option<Option<String>>,
    /// Up to 32 characters; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 32)]
    emoji: Option<Option<String>>,
    /// RFC 3339, in the future: when the text and emoji are cleared; `null`: never.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    text_expires_at: Option<Option<DateTime<Utc>>>,
}

impl StatusUpdateBody {
    /// The update the body asks for, in the model's terms.
    fn into_update(self) -> Result<StatusUpdate, ApiError> {
        let availability = match (self.availability, self.until) {
            (Some(availability), until) => Update::Set((availability, until.flatten())),
            (None, None | Some(None)) => Update::Keep,
            (None, Some(Some(_))) => {
                return Err(ApiError::Invalid {
                    field: "until".to_owned(),
                    message: "is only taken with `availability`".to_owned(),
                });
            }
        };
        Ok(StatusUpdate {
            availability,
            text: self.text.map_or(Update::Keep, Update::Set),
            emoji: self.emoji.map_or(Update::Keep, Update::Set),
            text_expires_at: self.text_expires_at.map_or(Update::Keep, Update::Set),
        })
    }
}

/// Set the caller's manual status and custom status. Others are told what they are
/// shown change; an end (`until`, `text_expires_at`) is applied at that moment.
#[utoipa::path(put, path = "/api/users/me/status/", tag = "status", security(("bearer" = [])),
    request_body = StatusUpdateBody,
    responses(
        (status = 200, description = "The caller's status", body = OwnStatus),
        (status = 400, description = "An unknown availability, an end in the past or for \
            `auto`/`invisible`, a text too long, or an unknown field", body = ErrorBody),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody)))]
pub async fn set_status(
    state: web::Data<AppState>,
    caller: Authenticated,
    JsonBody(body): JsonBody<StatusUpdateBody>,
) -> Result<HttpResponse, ApiError> {
    let update = body.into_update()?;
    let (user_id, timings) = (caller.user_id, state.policy().timings());
    let set = db(&state, move |conn| {
        manual::set_status(conn, timings, user_id, &update)
    })
    .await?
    .ok_or(ApiError::Unauthenticated)?;
    state.wrote_user(user_id);
    publish_soon(&state, set.transition.as_ref()).await;
    if let Some(at) = set.next_expiry {
        state.status_ends.schedule(at).await;
    }
    Ok(HttpResponse::Ok().json(set.status))
}
