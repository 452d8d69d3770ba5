//! Bearer-token authentication. Authenticating a request *is* the activity signal: it
//! refreshes `last_seen` of the session and the user (what the old middleware did).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use chrono::{DateTime, Utc};
use presence_model::policy::{PresencePolicy, Recording};
use presence_model::presence;
use presence_model::tokens;
use presence_model::views::LiveSession;
use presence_model::vocabulary::CountsAs;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::errors::ApiError;
use crate::session_cache::CachedSession;
use crate::state::{AppState, db, publish_soon};
use presence_model::ids::{SessionId, UserId};

/// The heartbeat's optional body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// Whether the user really used the app since the last heartbeat (`false`: the page is
    /// hidden or untouched). Left out, or no body at all: `true`.
    active: Option<bool>,
}

/// Tokens are 43 characters; anything much longer is not one of ours and is not hashed.
const MAX_TOKEN_LEN: usize = 256;

/// The caller, authenticated by a live session, with their presence just refreshed.
pub struct Authenticated {
    pub session_id: SessionId,
    pub user_id: UserId,
    /// Whether the caller may use the admins' endpoints.
    pub is_admin: bool,
    /// The caller's `last_seen`: this request, if it counted as activity.
    pub last_seen: Option<DateTime<Utc>>,
    /// Key of the session cache, so logout can drop the entry at once.
    pub token_hash: Vec<u8>,
}

impl Authenticated {
    pub(crate) fn new(
        live: &LiveSession,
        last_seen: Option<DateTime<Utc>>,
        token_hash: Vec<u8>,
    ) -> Self {
        Self {
            session_id: live.session_id,
            user_id: live.user_id,
            is_admin: live.is_admin,
            last_seen,
            token_hash,
        }
    }
}

/// An authenticated caller who is an admin.
pub struct Admin(pub Authenticated);

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= MAX_TOKEN_LEN)
        .then(|| token.to_owned())
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    /// Three steps: the route's body, where it says what the request counts as (only the
    /// heartbeat's does); the session; the activity recorded on it.
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        // Declared by the route (see `routes::ENDPOINTS`).
        let counts_as = req
            .app_data::<CountsAs>()
            .copied()
            .unwrap_or(CountsAs::Activity);
        let body =
            (counts_as == CountsAs::Heartbeat).then(|| web::Bytes::from_request(req, payload));
        Box::pin(async move {
            let declared_active = match body {
                Some(body) => declared_active(&body.await.map_err(|_| ApiError::PayloadTooLarge)?)?,
                None => None,
            };
            let token = token.ok_or(ApiError::Unauthenticated)?;
            let state = state.ok_or_else(|| ApiError::internal("AppState is not registered"))?;
            let token_hash = tokens::hash_token(&token);
            let now = presence::activity_time();
            let policy = state.policy();
            let (session, from_cache) = find_session(&state, token_hash.clone()).await?;
            let vouched = state.activity.vouches(session.live.session_id);
            let recording =
                policy.recording(&session.live, counts_as, declared_active, now, vouched);
            // A cached snapshot's times only get older: look again before writing through.
            let (session, recording) = match recording {
                Recording::WriteNow { .. } if from_cache => {
                    let fresh = look_up_session(&state, token_hash.clone()).await?;
                    let recording =
                        policy.recording(&fresh.live, counts_as, declared_active, now, vouched);
                    (fresh, recording)
                }
                _ => (session, recording),
            };
            record_activity(
                &state,
                &policy,
                &session.live,
                token,
                token_hash,
                recording,
                now,
            )
            .await
        })
    }
}

/// What the heartbeat's body says of the user's use of the app (`None`: no body, or no
/// `active`).
fn declared_active(body: &[u8]) -> Result<Option<bool>, ApiError> {
    Ok(crate::extract::optional_json::<HeartbeatBody>(body)?.and_then(|body| body.active))
}

/// Records the request's activity on `live` as `recording` decided at `now` under
/// `policy`: deferred to the next flush (no write), or written at once.
async fn record_activity(
    state: &web::Data<AppState>,
    policy: &PresencePolicy,
    live: &LiveSession,
    token: String,
    token_hash: Vec<u8>,
    recording: Recording,
    now: DateTime<Utc>,
) -> Result<Authenticated, ApiError> {
    match recording {
        Recording::Nothing => Ok(Authenticated::new(live, live.last_seen, token_hash)),
        Recording::Defer { active } => {
            if state.activity.defer(live.session_id, now, active) {
                state.write_all_activity().await;
            }
            Ok(Authenticated::new(live, Some(now), token_hash))
        }
        Recording::WriteNow { reason, active } => {
            let (timings, ttl) = (policy.timings(), state.session_ttl);
            let (live, update) = db(state, move |conn| {
                presence::record_activity(conn, timings, &token, ttl, reason, active)
            })
            .await?
            .ok_or(ApiError::Unauthenticated)?;
            state.wrote_user(live.user_id);
            publish_soon(state, update.transition.as_ref()).await;
            let caller = Authenticated::new(&live, update.last_seen, token_hash.clone());
            state.sessions.remember(token_hash, live);
            Ok(caller)
        }
    }
}

/// The live session whose token hashes to `token_hash`, from the cache or PostgreSQL,
/// recording nothing: how a stream ticket's session is checked, as a token is.
pub async fn live_session(
    state: &web::Data<AppState>,
    token_hash: Vec<u8>,
) -> Result<Arc<CachedSession>, ApiError> {
    find_session(state, token_hash)
        .await
        .map(|(session, _)| session)
}

/// The live session, and whether it came from the cache.
async fn find_session(
    state: &web::Data<AppState>,
    token_hash: Vec<u8>,
) -> Result<(Arc<CachedSession>, bool), ApiError> {
    match state.sessions.cached(&token_hash) {
        Some(cached) => Ok((cached, true)),
        None => Ok((look_up_session(state, token_hash).await?, false)),
    }
}

async fn look_up_session(
    state: &web::Data<AppState>,
    token_hash: Vec<u8>,
) -> Result<Arc<CachedSession>, ApiError> {
    state
        .sessions
        .look_up(&state.pool, token_hash)
        .await?
        .ok_or(ApiError::Unauthenticated)
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let authenticated = Authenticated::from_request(req, payload);
        Box::pin(async move {
            let caller = authenticated.await?;
            if caller.is_admin {
                Ok(Self(caller))
            } else {
                Err(ApiError::Forbidden)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn parses_bearer_tokens() {
        let token = |value: &str| {
            bearer_token(
                &TestRequest::default()
                    .insert_header((AUTHORIZATION, value))
                    .to_http_request(),
            )
        };
        assert_eq!(token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(token(&format!("Bearer {}", "a".repeat(300))), None);
        assert_eq!(
            bearer_token(&TestRequest::default().to_http_request()),
            None
        );
    }
}
