//! How many users are shown each presence: the counts of the online-count endpoint, the
//! health check and the operator page, by the rule of [`crate::shown`].

use diesel::dsl::count;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use serde::Serialize;

use crate::schema::users;
use crate::settings::Timings;
use crate::shown::{connected_now, public_presence, true_presence};
use crate::vocabulary::Presence;

/// How many users are shown each presence but offline, as everyone but admins sees it
/// (an invisible user is not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Queryable)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceCounts {
    /// online + away + dnd: everyone connected (what older clients read as "online").
    pub count: i64,
    pub online: i64,
    pub away: i64,
    pub dnd: i64,
}

/// The counts by presence. Only connected users are read (the partial index of online
/// users by `last_seen`), so it costs in proportion to them.
pub fn presence_counts(conn: &mut PgConnection, timings: Timings) -> QueryResult<PresenceCounts> {
    let shown = public_presence(timings.window(), timings.away_after(), None);
    users::table
        .filter(connected_now(timings.window()))
        .select((
            count(users::id).aggregate_filter(shown.ne(Presence::Offline)),
            count(users::id).aggregate_filter(shown.eq(Presence::Online)),
            count(users::id).aggregate_filter(shown.eq(Presence::Away)),
            count(users::id).aggregate_filter(shown.eq(Presence::Dnd)),
        ))
        .get_result(conn)
}

/// How many users have each presence, as admins see it (an invisible user by their true
/// presence): the operator page's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Queryable)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceTotals {
    pub online: i64,
    pub away: i64,
    pub dnd: i64,
    pub offline: i64,
}

pub fn presence_totals(conn: &mut PgConnection, timings: Timings) -> QueryResult<PresenceTotals> {
    let shown = true_presence(timings.window(), timings.away_after(), None);
    users::table
        .select((
            count(users::id).aggregate_filter(shown.eq(Presence::Online)),
            count(users::id).aggregate_filter(shown.eq(Presence::Away)),
            count(users::id).aggregate_filter(shown.eq(Presence::Dnd)),
            count(users::id).aggregate_filter(shown.eq(Presence::Offline)),
        ))
        .get_result(conn)
}
