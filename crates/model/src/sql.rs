//! The SQL functions queries call, declared once for the query builder: PostgreSQL's own,
//! and the ones the migrations define (as crates.io's `src/sql.rs` does), so a query that
//! calls one is typed, bound by name and kept prepared.

// A migration's function takes the arguments it takes.
#![allow(clippy::too_many_arguments)]

use diesel::sql_types::{BigInt, Interval, Nullable, Text, Timestamptz};

diesel::define_sql_function!(
    /// The time now, not at the start of the transaction: a write made after waiting for
    /// a row lock is stamped after the write it waited for.
    fn clock_timestamp() -> Timestamptz
);

diesel::define_sql_function!(
    /// `value`, or `otherwise` when `value` is `NULL`.
    fn coalesce(value: Nullable<Timestamptz>, otherwise: Timestamptz) -> Timestamptz
);

diesel::define_sql_function!(fn lower(x: Text) -> Text);

diesel::define_sql_function!(
    /// The earlier of `a` and `b`, or `a` when `b` is `NULL`.
    fn least(a: Timestamptz, b: Nullable<Timestamptz>) -> Timestamptz
);

diesel::define_sql_function!(
    /// Waits for the session-level advisory lock `key`.
    fn pg_advisory_lock(key: BigInt) -> Untyped
);

diesel::define_sql_function!(
    /// Releases the session-level advisory lock `key`; false if it was not held.
    fn pg_advisory_unlock(key: BigInt) -> Bool
);

diesel::define_sql_function!(
    /// Waits for the advisory lock `key`, held until the transaction ends.
    fn pg_advisory_xact_lock(key: BigInt) -> Untyped
);

diesel::define_sql_function!(
    /// Migration `000009`: the presence the user is shown themselves and admins are
    /// shown, as of `at`: offline unless connected within the window; then a manual
    /// away or dnd that has not ended; then online while active within `away_after`,
    /// away after.
    fn presence_of(
        status: Text,
        last_seen: Nullable<Timestamptz>,
        active_at: Nullable<Timestamptz>,
        availability: Text,
        availability_until: Nullable<Timestamptz>,
        presence_window: Interval,
        away_after: Interval,
        at: Timestamptz,
    ) -> Text
);

diesel::define_sql_function!(
    /// Migration `000009`: [`presence_of`] as everyone else is shown it (invisible is
    /// offline).
    fn presence_public(
        status: Text,
        last_seen: Nullable<Timestamptz>,
        active_at: Nullable<Timestamptz>,
        availability: Text,
        availability_until: Nullable<Timestamptz>,
        presence_window: Interval,
        away_after: Interval,
        at: Timestamptz,
    ) -> Text
);

diesel::define_sql_function!(
    /// Migration `000007`: connected now, within the window (a range on `last_seen`,
    /// for the partial index of online users).
    fn presence_shown_online(
        status: Text,
        last_seen: Nullable<Timestamptz>,
        presence_window: Interval,
    ) -> Bool
);

diesel::define_sql_function!(
    /// Migration `000007`: connected at `since` by the window and no longer now, with
    /// no write (time moved the user past the window's edge).
    fn presence_went_offline_since(
        status: Text,
        last_seen: Nullable<Timestamptz>,
        presence_window: Interval,
        since: Timestamptz,
    ) -> Bool
);

diesel::define_sql_function!(
    /// Migration `000015`: makes the event log's partitions from the last one's end until
    /// `at` + `ahead`, each ending on a multiple of `width`; returns how many it made.
    fn prepare_event_partitions(at: Timestamptz, width: Interval, ahead: Interval) -> Integer
);

diesel::define_sql_function!(
    /// Migration `000015`: the event log's retention (partitions ended by `before` are
    /// condemned, and dropped a `grace` later; `batch` rows of the default partition are
    /// deleted); returns the partitions dropped.
    fn drop_event_partitions(before: Timestamptz, grace: Interval, batch: BigInt) -> Integer
);
