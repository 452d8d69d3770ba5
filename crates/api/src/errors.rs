//! The error policy of the API, in one place.
//!
//! - Every error response has one shape:
//!   `{"error": {"code": "<snake_case>", "message": "<human text>"}}`, plus `"field"` when
//!   one input field is to blame. `code` is stable for clients; `message` is for people.
//! - Bad input is the client's fault and says so: 400 names the field or the JSON problem,
//!   413 and 415 say what the body must be. Bad input never panics and never yields a 500.
//! - 401 means "who are you?" (no, unknown, expired or revoked token; bad credentials;
//!   a stream ticket used or expired, each with its own code, see [`ErrorCode`]),
//!   403 "not allowed for you", 404 "no such thing", 405 "not with this method" (with
//!   `Allow`), 408 "your body never came" (and the connection is closed), 409 "conflicts
//!   with what exists", 429 "too many failed logins, or too many streams of yours, wait"
//!   (with `Retry-After`).
//! - 503 with `Retry-After` means "we cannot reach a dependency right now, try again":
//!   PostgreSQL down, the pool exhausted, too many password hashes queued, Redis down for
//!   tickets, or this process holding all the streams it may. It is answered within the
//!   pool's checkout timeout, never after a hang.
//! - Anything else is our fault: the cause is logged here, once, and the client gets an
//!   opaque 500. Secrets (passwords, tokens, hashes) are never part of an error message.
//! - Errors that actix's HTTP/1 parser answers before a request reaches us (431 for
//!   oversized headers, 400 for a malformed request line or conflicting length headers)
//!   have actix's empty body, not this shape: actix gives no hook there.

use std::fmt;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use presence_model::error::ValidationError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("send a valid token as `Authorization: Bearer <token>`")]
    Unauthenticated,
    #[error("this ticket was used already: get a new one")]
    TicketUsed,
    #[error("this ticket expired, or was never issued: get a new one")]
    TicketExpired,
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("only admins may do this")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("this method is not allowed on this path")]
    MethodNotAllowed {
        /// The methods the path does take, for the `Allow` header.
        allow: Vec<actix_web::http::Method>,
    },
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("{what}; try again later")]
    TooManyRequests {
        /// What there is too much of, for the message.
        what: &'static str,
        retry_after_secs: u64,
    },
    #[error("{reason}; try again shortly")]
    Unavailable { reason: &'static str },
    #[error("that username is already taken")]
    UsernameTaken,
    #[error("the request body is larger than {} KiB", JSON_BODY_LIMIT / 1024)]
    PayloadTooLarge,
    #[error("the request body must be JSON, sent with `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("internal server error")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

/// The largest JSON body any endpoint accepts.
pub const JSON_BODY_LIMIT: usize = 16 * 1024;

impl ApiError {
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(e.into())
    }

    fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Invalid { .. } => ErrorCode::InvalidField,
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::TicketUsed => ErrorCode::TicketUsed,
            Self::TicketExpired => ErrorCode::TicketExpired,
            Self::InvalidCredentials => ErrorCode::InvalidCredentials,
            Self::Forbidden => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Self::RequestTimeout => ErrorCode::RequestTimeout,
            Self::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            Self::UsernameTaken => ErrorCode::UsernameTaken,
            Self::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::Internal(_) => ErrorCode::InternalError,
        }
    }
}

/// What went wrong, stable for clients to act on (`message` is for people). A 401 says
/// what to do next: `unauthenticated` (no token, or its session is unknown, expired or
/// logged out: log in again), `ticket_used` or `ticket_expired` (the stream's ticket is
/// spent: get a new one from `POST /api/presence/tickets/`, with the token), or
/// `invalid_credentials` (login: wrong username or password).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidField,
    Unauthenticated,
    TicketUsed,
    TicketExpired,
    InvalidCredentials,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    UsernameTaken,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    Unavailable,
    InternalError,
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Invalid {
            field: e.field.to_owned(),
            message: e.message,
        }
    }
}

impl From<presence_runtime::blocking::BlockingError> for ApiError {
    fn from(e: presence_runtime::blocking::BlockingError) -> Self {
        use presence_runtime::blocking::BlockingError as B;
        match e {
            B::Model(e) => e.into(),
            B::Join(e) => Self::internal(e),
        }
    }
}

/// A failure shared by every request that waited for the same read
/// (`crate::coalesced_reads`): it can only have been the database's, or the read's task.
impl From<crate::coalesced_reads::ReadFailed<presence_runtime::blocking::BlockingError>>
    for ApiError
{
    fn from(
        e: crate::coalesced_reads::ReadFailed<presence_runtime::blocking::BlockingError>,
    ) -> Self {
        use crate::coalesced_reads::ReadFailed;
        use presence_runtime::blocking::BlockingError as B;
        match e {
            ReadFailed::Failed(e) => match &*e {
                B::Model(e) if e.is_unavailable() => {
                    log::warn!("database unavailable: {e}");
                    Self::Unavailable {
                        reason: "the database is unavailable",
                    }
                }
                e => Self::internal(e.to_string()),
            },
            ReadFailed::Abandoned => {
                Self::internal("a read shared with other requests was abandoned")
            }
        }
    }
}

impl From<presence_model::Error> for ApiError {
    fn from(e: presence_model::Error) -> Self {
        use presence_model::Error as E;
        match e {
            E::Invalid(invalid) => invalid.into(),
            E::UsernameTaken => Self::UsernameTaken,
            E::InvalidCredentials => Self::InvalidCredentials,
            e if e.is_unavailable() => {
                log::warn!("database unavailable: {e}");
                Self::Unavailable {
                    reason: "the database is unavailable",
                }
            }
            e => Self::internal(e),
        }
    }
}

/// Seconds a client is told to wait after a 503.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    code: ErrorCode,
    /// For people; may change.
    message: String,
    /// The input field to blame (with `invalid_field`); `null` otherwise.
    field: Option<String>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated
            | Self::TicketUsed
            | Self::TicketExpired
            | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::UsernameTaken => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            log::error!("internal error: {}", Chain(cause.as_ref()));
        }
        let field = match self {
            Self::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::MethodNotAllowed { allow } => {
                response.insert_header(actix_web::http::header::Allow(allow.clone()));
            }
            Self::RequestTimeout => {
                response.force_close();
            }
            Self::TooManyRequests {
                retry_after_secs, ..
            } => {
                response.insert_header((RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::Unavailable { .. } => {
                response.insert_header((RETRY_AFTER, UNAVAILABLE_RETRY_AFTER_SECS.to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                field,
            },
        })
    }
}

/// An error with its sources, for the log line.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// For `JsonConfig::error_handler`: malformed, oversized or non-JSON bodies. Mistyped
/// fields are reported by [`crate::extract::JsonBody`], which knows their path.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("invalid JSON body: {e}")),
        other => ApiError::BadRequest(format!("could not read the request body: {other}")),
    }
    .into()
}

/// For `QueryConfig::error_handler`.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query string: {err}")).into()
}

/// For `PathConfig::error_handler`: a path parameter of the wrong type, such as a
/// non-numeric user id.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid path parameter: {err}")).into()
}
