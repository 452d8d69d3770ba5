//! Bearer-token authentication. Authenticating a request *is* the activity signal: it
//! refreshes `last_seen` of the session and the user (what the old middleware did).

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use presence_model::presence::{self, CountsAs, LiveSession};
use presence_model::sessions;
use presence_model::users::User;

use crate::activity;
use crate::errors::ApiError;
use crate::state::{AppState, db, publish_soon};

/// Tokens are 43 characters; anything much longer is not one of ours and is not hashed.
const MAX_TOKEN_LEN: usize = 256;

/// The caller, authenticated by a live session, with their presence just refreshed.
pub struct Authenticated {
    pub session_id: i64,
    /// The caller as shown, `last_seen` being this request.
    pub user: User,
    /// Key of the session cache, so logout can drop the entry at once.
    pub token_hash: Vec<u8>,
}

impl Authenticated {
    pub fn user(&self) -> &User {
        &self.user
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

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        // Declared by the route (see `routes::ENDPOINTS`).
        let counts_as = req
            .app_data::<CountsAs>()
            .copied()
            .unwrap_or(CountsAs::Activity);
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthenticated)?;
            let state = state.ok_or_else(|| ApiError::internal("AppState is not registered"))?;
            authenticate(&state, token, counts_as).await
        })
    }
}

/// Recognises the session and, if the route counts as activity, records it: deferred to
/// the next flush when the user is online and safely inside the window (no write),
/// written at once otherwise.
async fn authenticate(
    state: &web::Data<AppState>,
    token: String,
    counts_as: CountsAs,
) -> Result<Authenticated, ApiError> {
    let (policy, ttl) = (state.policy, state.session_ttl);
    let window = policy.window();
    let token_hash = sessions::hash_token(&token);
    let now = presence::activity_time();
    let reason = counts_as.reason();
    let mut cached = state.sessions.cached(&token_hash);
    // A cached snapshot's last_seen only gets older: look again before writing through
    // (a request that records nothing needs only the session).
    if reason.is_some()
        && cached
            .as_ref()
            .is_some_and(|c| !policy.may_defer(&c.live, now))
    {
        cached = None;
    }
    let cached = match cached {
        Some(cached) => cached,
        None => {
            let lookup = token_hash.clone();
            let live = db(state, move |conn| {
                presence::find_live_session(conn, &lookup, window, ttl)
            })
            .await?
            .ok_or(ApiError::Unauthenticated)?;
            state.sessions.remember(token_hash.clone(), live)
        }
    };
    let live = &cached.live;
    let Some(reason) = reason else {
        return Ok(Authenticated {
            session_id: live.session_id,
            user: live.user.clone(),
            token_hash,
        });
    };
    if policy.may_defer(live, now) {
        if state.activity.defer(live.session_id, now) {
            activity::flush(state).await;
        }
        let mut user = live.user.clone();
        user.last_seen = Some(now);
        return Ok(Authenticated {
            session_id: live.session_id,
            user,
            token_hash,
        });
    }
    let (session_id, update) = db(state, move |conn| {
        presence::record_activity(conn, &token, ttl, reason)
    })
    .await?
    .ok_or(ApiError::Unauthenticated)?;
    publish_soon(state, update.change.as_ref()).await;
    state.sessions.remember(
        token_hash.clone(),
        LiveSession {
            session_id,
            stored_status: update.user.online_status,
            user: update.user.clone(),
        },
    );
    Ok(Authenticated {
        session_id,
        user: update.user,
        token_hash,
    })
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let authenticated = Authenticated::from_request(req, payload);
        Box::pin(async move {
            let caller = authenticated.await?;
            if caller.user().is_admin {
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
