//! The values readers are given, one per viewer: what everyone but admins and the user is
//! shown (`PublicStatus`, its `StatusDetails` stored whole), what admins are
//! (`AdminStatus`), what the user is (`OwnStatus`); and a live session as the API caches
//! it (`LiveSession`).

use std::io::Write;

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Jsonb, Nullable};
use serde::{Deserialize, Serialize};

use crate::ids::{SessionId, UserId};
use crate::vocabulary::{Availability, OnlineStatus, Presence};

/// A user's status as everyone but admins and the user is shown it: the stream, the
/// status lookups and the published history. An invisible user is shown exactly as a user
/// who logged out. Every field is always sent (`null` when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicStatus {
    pub id: UserId,
    pub presence: Presence,
    /// `online` while the presence is online, away or dnd: for clients that know only two
    /// states.
    pub online_status: OnlineStatus,
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub details: StatusDetails,
}

/// What others are shown of a user besides their presence and `last_seen`: empty while
/// they are shown offline. The outbox stores, compares and publishes it as one value
/// (`users.published_details`, `presence_events.details`), so a field added here needs
/// no migration and no change to the outbox.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, diesel::deserialize::FromSqlRow,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusDetails {
    pub status_text: Option<String>,
    pub status_emoji: Option<String>,
    /// When a do-not-disturb ends, if it has an end.
    pub dnd_until: Option<DateTime<Utc>>,
}

/// PostgreSQL's binary `jsonb`: a version byte, then the JSON text.
const JSONB_VERSION: u8 = 1;

/// Stored as JSON, and empty details as `NULL`: so the events of a mass sweep, all of
/// them to offline, store none.
impl ToSql<Nullable<Jsonb>, Pg> for StatusDetails {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        if *self == Self::default() {
            return Ok(IsNull::Yes);
        }
        out.write_all(&[JSONB_VERSION])?;
        serde_json::to_writer(out, self)?;
        Ok(IsNull::No)
    }
}

impl FromSql<Nullable<Jsonb>, Pg> for StatusDetails {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes().split_first() {
            Some((&JSONB_VERSION, json)) => Ok(serde_json::from_slice(json)?),
            _ => Err("not jsonb of version 1".into()),
        }
    }

    fn from_nullable_sql(value: Option<PgValue<'_>>) -> deserialize::Result<Self> {
        value.map_or_else(|| Ok(Self::default()), Self::from_sql)
    }
}

/// A user's status as admins are shown it (the admins' list): the truth, in the shape
/// of [`PublicStatus`], with whether the user is invisible to everyone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminStatus {
    #[serde(flatten)]
    pub status: PublicStatus,
    pub invisible: bool,
}

/// A user's status as they are shown it themselves: the truth, with the manual status
/// and the ends only they see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OwnStatus {
    #[serde(flatten)]
    pub status: PublicStatus,
    pub availability: Availability,
    /// When a manual away or dnd ends.
    pub availability_until: Option<DateTime<Utc>>,
    /// When the custom status ends.
    pub status_expires_at: Option<DateTime<Utc>>,
}

/// A live session, looked up by its token without writing anything, with what decides
/// whether its activity may be deferred: what an API process caches to authenticate
/// requests.
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable)]
pub struct LiveSession {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub is_admin: bool,
    /// The user's connected flag.
    pub stored_status: OnlineStatus,
    pub last_seen: Option<DateTime<Utc>>,
    pub active_at: Option<DateTime<Utc>>,
}
