//! The service's recent history, for the operator page's charts: one sample per sweep tick
//! (connected users by presence, the sweep's figures, the publisher's lag, open streams,
//! transitions by reason), kept for [`KEEP`], read back in buckets.
//!
//! Transitions are counted as the publisher numbers them: each sample counts those
//! published after the previous sample's cursor up to its own, so every transition is
//! counted once, in the sample of the tick after it was published (a backlog shows as the
//! lag, and its transitions when they go out).

use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl::{count, count_star, max, now};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Integer, Interval, Nullable, Timestamptz};

use crate::feed::unpublished_backlog;
use crate::schema::{event_publication, presence_events, presence_samples, users};
use crate::shown::{connected_now, true_presence};
use crate::sql::pg_advisory_xact_lock;
use crate::vocabulary::{ChangeReason, Presence};

/// How long samples are kept: the last day the page charts, and an hour of slack.
pub const KEEP: TimeDelta = TimeDelta::hours(25);

/// Taken by whoever records a sample: two samples never count the same transitions.
const SAMPLE_LOCK_KEY: i64 = 0x7072_6573_7361_6d70; // "pressamp"

/// What a sweep tick measured of its own sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepFigures {
    pub took: std::time::Duration,
    pub users_marked_offline: usize,
}

/// Transitions by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, QueryableByName)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransitionCounts {
    #[diesel(sql_type = BigInt)]
    pub login: i64,
    #[diesel(sql_type = BigInt)]
    pub logout: i64,
    #[diesel(sql_type = BigInt)]
    pub heartbeat: i64,
    #[diesel(sql_type = BigInt)]
    pub activity: i64,
    #[diesel(sql_type = BigInt)]
    pub idle: i64,
    #[diesel(sql_type = BigInt)]
    pub manual: i64,
    #[diesel(sql_type = BigInt)]
    pub expiry: i64,
    #[diesel(sql_type = BigInt)]
    pub sweep: i64,
    #[diesel(sql_type = BigInt)]
    pub status_text: i64,
}

impl TransitionCounts {
    fn add(&mut self, reason: ChangeReason, n: i64) {
        let slot = match reason {
            ChangeReason::Login => &mut self.login,
            ChangeReason::Logout => &mut self.logout,
            ChangeReason::Heartbeat => &mut self.heartbeat,
            ChangeReason::Activity => &mut self.activity,
            ChangeReason::Idle => &mut self.idle,
            ChangeReason::Manual => &mut self.manual,
            ChangeReason::Expiry => &mut self.expiry,
            ChangeReason::Sweep => &mut self.sweep,
            ChangeReason::StatusText => &mut self.status_text,
        };
        *slot += n;
    }
}

fn narrow(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn millis(took: TimeDelta) -> i32 {
    narrow(took.num_milliseconds().max(0))
}

/// Records the sample of the tick `at` (once: a second sample of a tick is ignored), with
/// what the tick measured of its sweep and the streams open on the API replicas (`None`
/// if they could not be counted).
pub fn record_sample(
    conn: &mut PgConnection,
    at: DateTime<Utc>,
    sweep: SweepFigures,
    streams_open: Option<u64>,
) -> Result<(), crate::Error> {
    conn.transaction(|conn| {
        diesel::select(pg_advisory_xact_lock(SAMPLE_LOCK_KEY)).execute(conn)?;
        let timings = crate::settings::timings(conn)?;
        let shown = true_presence(timings.window(), timings.away_after(), None);
        let (online, away, dnd): (i64, i64, i64) = users::table
            .filter(connected_now(timings.window()))
            .select((
                count(users::id).aggregate_filter(shown.eq(Presence::Online)),
                count(users::id).aggregate_filter(shown.eq(Presence::Away)),
                count(users::id).aggregate_filter(shown.eq(Presence::Dnd)),
            ))
            .get_result(conn)?;
        let published_through: i64 = event_publication::table
            .select(event_publication::sent_through)
            .get_result(conn)?;
        let counted_through = presence_samples::table
            .select(max(presence_samples::published_through))
            .get_result::<Option<i64>>(conn)?
            .unwrap_or(published_through);
        let mut transitions = TransitionCounts::default();
        let by_reason: Vec<(ChangeReason, i64)> = presence_events::table
            .filter(presence_events::revision.gt(counted_through))
            .filter(presence_events::revision.le(published_through))
            .group_by(presence_events::reason)
            .select((presence_events::reason, count_star()))
            .load(conn)?;
        for (reason, n) in by_reason {
            transitions.add(reason, n);
        }
        let (_, oldest) = unpublished_backlog(conn)?;
        let db_now: DateTime<Utc> =
            diesel::select(now.into_sql::<Timestamptz>()).get_result(conn)?;
        let publish_lag = oldest.map_or(TimeDelta::zero(), |oldest| db_now - oldest);
        let took = TimeDelta::from_std(sweep.took).unwrap_or(TimeDelta::MAX);
        use presence_samples::dsl as s;
        diesel::insert_into(s::presence_samples)
            .values((
                s::at.eq(at),
                s::online.eq(narrow(online)),
                s::away.eq(narrow(away)),
                s::dnd.eq(narrow(dnd)),
                s::sweep_ms.eq(millis(took)),
                s::swept.eq(narrow(
                    i64::try_from(sweep.users_marked_offline).unwrap_or(i64::MAX),
                )),
                s::publish_lag_ms.eq(millis(publish_lag)),
                s::streams_open
                    .eq(streams_open.map(|n| narrow(i64::try_from(n).unwrap_or(i64::MAX)))),
                s::published_through.eq(published_through.max(counted_through)),
                s::transitions_login.eq(narrow(transitions.login)),
                s::transitions_logout.eq(narrow(transitions.logout)),
                s::transitions_heartbeat.eq(narrow(transitions.heartbeat)),
                s::transitions_activity.eq(narrow(transitions.activity)),
                s::transitions_idle.eq(narrow(transitions.idle)),
                s::transitions_manual.eq(narrow(transitions.manual)),
                s::transitions_expiry.eq(narrow(transitions.expiry)),
                s::transitions_sweep.eq(narrow(transitions.sweep)),
                s::transitions_status_text.eq(narrow(transitions.status_text)),
            ))
            .on_conflict(s::at)
            .do_nothing()
            .execute(conn)?;
        Ok(())
    })
}

/// The samples of one bucket of time, as a chart shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, QueryableByName)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPoint {
    /// The bucket's start.
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
    /// Connected users by presence as admins see it, at the bucket's last sample.
    #[diesel(sql_type = Integer)]
    pub online: i32,
    #[diesel(sql_type = Integer)]
    pub away: i32,
    #[diesel(sql_type = Integer)]
    pub dnd: i32,
    /// Streams open on the API replicas at the bucket's last sample (`null`: not known).
    #[diesel(sql_type = Nullable<Integer>)]
    pub streams_open: Option<i32>,
    /// The slowest sweep of the bucket, in milliseconds.
    #[diesel(sql_type = Integer)]
    pub sweep_ms: i32,
    /// Users the bucket's sweeps took offline.
    #[diesel(sql_type = BigInt)]
    pub swept: i64,
    /// The largest age of the oldest unpublished transition the bucket's samples saw.
    #[diesel(sql_type = Integer)]
    pub publish_lag_ms: i32,
    /// Transitions published in the bucket, by reason.
    #[diesel(embed)]
    pub transitions: TransitionCounts,
    /// How many sweep ticks the bucket holds.
    #[diesel(sql_type = BigInt)]
    pub samples: i64,
}

/// The samples of the last `span`, in buckets of `bucket` aligned on the epoch, oldest
/// first; a bucket without a sample (no sweep ran) is left out.
pub fn history(
    conn: &mut PgConnection,
    span: TimeDelta,
    bucket: TimeDelta,
) -> QueryResult<Vec<HistoryPoint>> {
    // date_bin, and "the value of the bucket's last sample" (array_agg ordered), have no
    // DSL form.
    sql_query(
        "SELECT date_bin($1, at, 'epoch') AS at, \
                (array_agg(online ORDER BY at DESC))[1] AS online, \
                (array_agg(away ORDER BY at DESC))[1] AS away, \
                (array_agg(dnd ORDER BY at DESC))[1] AS dnd, \
                (array_agg(streams_open ORDER BY at DESC))[1] AS streams_open, \
                max(sweep_ms) AS sweep_ms, sum(swept)::int8 AS swept, \
                max(publish_lag_ms) AS publish_lag_ms, \
                sum(transitions_login)::int8 AS login, sum(transitions_logout)::int8 AS logout, \
                sum(transitions_heartbeat)::int8 AS heartbeat, \
                sum(transitions_activity)::int8 AS activity, sum(transitions_idle)::int8 AS idle, \
                sum(transitions_manual)::int8 AS manual, sum(transitions_expiry)::int8 AS expiry, \
                sum(transitions_sweep)::int8 AS sweep, \
                sum(transitions_status_text)::int8 AS status_text, \
                count(*) AS samples \
         FROM presence_samples WHERE at > now() - $2 \
         GROUP BY 1 ORDER BY 1",
    )
    .bind::<Interval, _>(bucket)
    .bind::<Interval, _>(span)
    .load(conn)
}
