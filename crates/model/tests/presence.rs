//! The presence rules against a real PostgreSQL database.

use chrono::TimeDelta;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Interval};
use presence_model::directory;
use presence_model::flushes::{self, UserWrites};
use presence_model::ids::UserId;
use presence_model::policy::FlushGranularity;
use presence_model::settings::Timings;
use presence_model::shown;
use presence_model::sweeps;
use presence_model::testing::TestDatabase;
use presence_model::tokens;
use presence_model::views;
use presence_model::vocabulary::ChangeReason;
use presence_model::vocabulary::Presence;
use presence_model::{OnlineStatus, presence, sessions, users};

const WINDOW: TimeDelta = TimeDelta::seconds(120);
const TTL: TimeDelta = TimeDelta::days(30);
const TIMINGS: Timings = Timings {
    offline_after_secs: 120,
    away_after_secs: 300,
};

fn user(db: &TestDatabase, name: &str) -> UserId {
    users::register(db.pool(), TIMINGS, name, "password123")
        .unwrap()
        .id()
}

/// Runs the sweep; the users it took offline, in id order.
fn swept(conn: &mut PgConnection) -> QueryResult<Vec<UserId>> {
    let mut ids: Vec<UserId> = sweeps::sweep(conn, TIMINGS, TimeDelta::zero())?
        .into_iter()
        .filter(|change| change.to == Presence::Offline)
        .map(|change| change.user_id)
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

fn shown(conn: &mut PgConnection, id: UserId) -> Option<views::PublicStatus> {
    shown::shown_status(conn, TIMINGS, id)
        .unwrap()
        .map(|row| row.shown_to_others())
}

fn set_last_seen_ago(conn: &mut PgConnection, user_id: UserId, ago: TimeDelta) {
    sql_query("UPDATE users SET last_seen = now() - $2 WHERE id = $1")
        .bind::<BigInt, _>(user_id)
        .bind::<Interval, _>(ago)
        .execute(conn)
        .unwrap();
}

#[test]
fn sweep_marks_offline_only_users_silent_longer_than_the_window() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let (at_boundary, just_inside, just_outside, long_gone, offline) = (
        user(&db, "boundary"),
        user(&db, "inside"),
        user(&db, "outside"),
        user(&db, "gone"),
        user(&db, "offline"),
    );
    for id in [at_boundary, just_inside, just_outside, long_gone] {
        presence::mark_user_online(&mut conn, TIMINGS, id, ChangeReason::Login)
            .unwrap()
            .unwrap();
    }
    // now() is fixed inside a transaction, so "exactly the window ago" is exact here.
    let (changed, second) = conn
        .transaction(|conn| {
            set_last_seen_ago(conn, at_boundary, WINDOW);
            set_last_seen_ago(conn, just_inside, WINDOW - TimeDelta::milliseconds(1));
            set_last_seen_ago(conn, just_outside, WINDOW + TimeDelta::milliseconds(1));
            set_last_seen_ago(conn, long_gone, TimeDelta::days(3));
            set_last_seen_ago(conn, offline, TimeDelta::days(3));
            let first = swept(conn)?;
            let second = swept(conn)?;
            diesel::QueryResult::Ok((first, second))
        })
        .unwrap();
    assert_eq!(changed, vec![just_outside, long_gone]);
    assert_eq!(
        second,
        Vec::<UserId>::new(),
        "a second sweep has nothing left to do"
    );
}

#[test]
fn readers_never_see_online_past_the_window_even_without_a_sweep() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let (fresh, stale) = (user(&db, "fresh"), user(&db, "stale"));
    presence::mark_user_online(&mut conn, TIMINGS, fresh, ChangeReason::Login).unwrap();
    presence::mark_user_online(&mut conn, TIMINGS, stale, ChangeReason::Login).unwrap();
    set_last_seen_ago(&mut conn, stale, WINDOW + TimeDelta::seconds(1));

    assert_eq!(
        presence_model::counts::presence_counts(&mut conn, TIMINGS)
            .unwrap()
            .count,
        1
    );
    let status = shown(&mut conn, stale).unwrap();
    assert_eq!(status.online_status, OnlineStatus::Offline);
    assert_eq!(status.presence, Presence::Offline);
    let mut ids = |status| {
        let query = directory::UserQuery {
            status: Some(status),
            limit: 10,
            ..Default::default()
        };
        let page = directory::list_users(&mut conn, TIMINGS, &query).unwrap();
        page.users.iter().map(|u| u.id()).collect::<Vec<_>>()
    };
    assert_eq!(ids(OnlineStatus::Online), vec![fresh]);
    assert_eq!(ids(OnlineStatus::Offline), vec![stale]);
    assert!(shown(&mut conn, UserId(999_999)).is_none());
}

#[test]
fn transitions_are_reported_once() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let id = user(&db, "alice");
    let first = presence::mark_user_online(&mut conn, TIMINGS, id, ChangeReason::Login)
        .unwrap()
        .unwrap();
    let change = first.transition.clone().expect("a transition");
    assert_eq!(
        (change.from, change.to, change.reason),
        (Presence::Offline, Presence::Online, ChangeReason::Login)
    );
    assert_eq!(change.last_seen, first.last_seen);
    assert!(first.last_seen.is_some());
    let again = presence::mark_user_online(&mut conn, TIMINGS, id, ChangeReason::Login)
        .unwrap()
        .unwrap();
    assert_eq!(again.transition, None);
    assert!(again.last_seen >= first.last_seen);
    assert!(
        presence::mark_user_online(&mut conn, TIMINGS, UserId(424_242), ChangeReason::Login)
            .unwrap()
            .is_none()
    );
}

#[test]
fn logout_keeps_user_online_while_another_session_is_live() {
    let db = TestDatabase::new();
    user(&db, "multi");
    let phone = users::log_in(db.pool(), TIMINGS, "multi", "password123").unwrap();
    let laptop = users::log_in(db.pool(), TIMINGS, "MULTI", "password123").unwrap();
    let mut conn = db.pool().get().unwrap();

    let after_phone = sessions::log_out(&mut conn, TIMINGS, phone.session_id)
        .unwrap()
        .unwrap();
    assert!(
        after_phone.presence.transition.is_none(),
        "laptop session still live"
    );
    assert!(
        record(&mut conn, phone.token.expose(), TTL)
            .unwrap()
            .is_none()
    );
    let after_laptop = sessions::log_out(&mut conn, TIMINGS, laptop.session_id)
        .unwrap()
        .unwrap();
    let change = after_laptop.presence.transition.unwrap();
    assert_eq!(
        (change.from, change.to, change.reason),
        (Presence::Online, Presence::Offline, ChangeReason::Logout)
    );
    // Logging out twice changes nothing.
    assert!(
        sessions::log_out(&mut conn, TIMINGS, laptop.session_id)
            .unwrap()
            .is_none()
    );
}

#[test]
fn expired_sessions_stop_working() {
    let db = TestDatabase::new();
    user(&db, "sleepy");
    let login = users::log_in(db.pool(), TIMINGS, "sleepy", "password123").unwrap();
    let mut conn = db.pool().get().unwrap();
    sql_query("UPDATE sessions SET last_seen = now() - interval '2 hours' WHERE id = $1")
        .bind::<BigInt, _>(login.session_id)
        .execute(&mut conn)
        .unwrap();
    let ttl = TimeDelta::hours(1);
    assert!(
        record(&mut conn, login.token.expose(), ttl)
            .unwrap()
            .is_none()
    );
    assert!(
        record(&mut conn, login.token.expose(), TTL)
            .unwrap()
            .is_some()
    );
}

#[test]
fn the_sweep_waits_for_activity_a_live_replica_has_not_written_yet() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let (held, gone) = (user(&db, "held"), user(&db, "gone"));
    for id in [held, gone] {
        presence::mark_user_online(&mut conn, TIMINGS, id, ChangeReason::Login).unwrap();
    }
    set_last_seen_ago(&mut conn, held, WINDOW + TimeDelta::seconds(10));
    set_last_seen_ago(&mut conn, gone, WINDOW + TimeDelta::seconds(40));
    // A replica that reported a second ago has written everything it saw until 20 s ago
    // (PostgreSQL was down since, say): `held` may have been active after that.
    let cutoff = chrono::Utc::now() - TimeDelta::seconds(20);
    let none = FlushGranularity {
        users: TimeDelta::zero(),
        sessions: TimeDelta::zero(),
    };
    let promise = |conn: &mut PgConnection| {
        flushes::flush_last_seen(conn, "api-a", cutoff, &[], none, UserWrites::Due).unwrap()
    };
    promise(&mut conn);
    assert_eq!(swept(&mut conn).unwrap(), vec![gone]);
    // A replica silent for a whole window is presumed gone: it holds nothing back.
    sql_query("UPDATE activity_flushes SET reported_at = now() - $1")
        .bind::<Interval, _>(WINDOW + TimeDelta::seconds(1))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(swept(&mut conn).unwrap(), vec![held]);
    // So does one that stopped gracefully.
    presence::mark_user_online(&mut conn, TIMINGS, held, ChangeReason::Login).unwrap();
    set_last_seen_ago(&mut conn, held, WINDOW + TimeDelta::seconds(10));
    promise(&mut conn);
    assert!(swept(&mut conn).unwrap().is_empty());
    flushes::forget_replica(&mut conn, "api-a").unwrap();
    assert_eq!(swept(&mut conn).unwrap(), vec![held]);
}

fn record(
    conn: &mut PgConnection,
    token: &str,
    ttl: TimeDelta,
) -> QueryResult<Option<(views::LiveSession, presence::PresenceWritten)>> {
    presence::record_activity(conn, TIMINGS, token, ttl, ChangeReason::Activity, true)
}

#[test]
fn a_user_holds_at_most_max_sessions_the_least_recently_used_revoked_first() {
    let db = TestDatabase::new();
    let id = user(&db, "collector");
    let mut conn = db.pool().get().unwrap();
    let first = users::open_session(&mut conn, TIMINGS, id)
        .unwrap()
        .unwrap();
    // The first session is the most recently used one: the next oldest go first.
    sql_query("UPDATE sessions SET last_seen = now() + interval '1 minute' WHERE id = $1")
        .bind::<BigInt, _>(first.session_id)
        .execute(&mut conn)
        .unwrap();
    let opened: Vec<_> = (0..=sessions::MAX_SESSIONS_PER_USER)
        .map(|_| {
            users::open_session(&mut conn, TIMINGS, id)
                .unwrap()
                .unwrap()
        })
        .collect();
    let live = db.query_i64(&format!(
        "SELECT count(*) AS n FROM sessions WHERE user_id = {id} AND revoked_at IS NULL"
    ));
    assert_eq!(live, sessions::MAX_SESSIONS_PER_USER);
    let token_works = |token: &str| {
        tokens::find_live_session(&mut conn_of(&db), &tokens::hash_token(token), TTL)
            .unwrap()
            .is_some()
    };
    assert!(
        token_works(first.token.expose()),
        "the most recently used stays"
    );
    assert!(!token_works(opened[0].token.expose()));
    assert!(!token_works(opened[1].token.expose()));
    assert!(token_works(opened[2].token.expose()));
}

fn conn_of(
    db: &TestDatabase,
) -> diesel::r2d2::PooledConnection<diesel::r2d2::ConnectionManager<PgConnection>> {
    db.pool().get().unwrap()
}
