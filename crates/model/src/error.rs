//! What can go wrong in the model, split into what the caller did (bad input, taken
//! names, bad credentials) and what failed underneath (the database, the pool).

use diesel::r2d2::PoolError;

/// An input that breaks a rule, naming the field so a client can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("that username is already taken")]
    UsernameTaken,
    /// Deliberately one variant for "no such user" and "wrong password".
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("could not connect to the database: {0}")]
    Connection(#[from] diesel::ConnectionError),
    #[error("no database connection available: {0}")]
    Pool(#[from] PoolError),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("publishing failed: {0}")]
    Publish(String),
    #[error(
        "{setting} is {here} here, but {stored} for the processes already using this \
         database: start every API with {setting}={stored}, or change it for all of them \
         with `{setting}={here} presence-api migrate` and restart the APIs"
    )]
    SettingDisagreement {
        setting: &'static str,
        here: u32,
        stored: u32,
    },
    #[error("no presence timings are stored yet: no API has started on this database")]
    TimingsUnknown,
    #[error("user {0} does not exist")]
    UnknownUser(crate::ids::UserId),
}

impl Error {
    /// Whether PostgreSQL could not be reached, as opposed to a query going wrong: no
    /// pooled connection within the checkout timeout, or the connection lost mid-query.
    /// Worth retrying later; the API answers 503.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error as D};
        matches!(
            self,
            Self::Pool(_)
                | Self::Connection(_)
                | Self::Database(D::DatabaseError(
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                    _
                ))
        )
    }
}
