//! Bearer-token authentication. Authenticating a request *is* the activity signal: it
//! refreshes `last_seen` of the session and the user (what the old middleware did).

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use presence_model::jobs::ChangeReason;
use presence_model::presence::{self, PresenceUpdate};
use presence_model::users::User;

use crate::errors::ApiError;
use crate::routes::users::HEARTBEAT_PATH;
use crate::state::{AppState, db};

/// Tokens are 43 characters; anything much longer is not one of ours and is not hashed.
const MAX_TOKEN_LEN: usize = 256;

/// The caller, authenticated by a live session, with their presence just refreshed.
pub struct Authenticated {
    pub session_id: i64,
    pub update: PresenceUpdate,
}

impl Authenticated {
    pub fn user(&self) -> &User {
        &self.update.user
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
        let reason = if req.match_pattern().as_deref() == Some(HEARTBEAT_PATH.trim_end_matches('/'))
        {
            ChangeReason::Heartbeat
        } else {
            ChangeReason::Activity
        };
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthenticated)?;
            let state = state.ok_or_else(|| ApiError::internal("AppState is not registered"))?;
            let ttl = state.session_ttl;
            let (session_id, update) = db(&state, move |conn| {
                presence::update_user_last_seen(conn, &token, ttl)
            })
            .await?
            .ok_or(ApiError::Unauthenticated)?;
            state.queue.enqueue(update.change(reason)).await;
            Ok(Self { session_id, update })
        })
    }
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
