//! The presence rules against a real PostgreSQL database.

use chrono::TimeDelta;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Interval};
use presence_model::events::ChangeReason;
use presence_model::testing::TestDatabase;
use presence_model::{OnlineStatus, presence, sessions, users};

const WINDOW: TimeDelta = TimeDelta::seconds(120);
const TTL: TimeDelta = TimeDelta::days(30);

fn user(db: &TestDatabase, name: &str) -> i64 {
    users::register(db.pool(), name, "password123").unwrap().id
}

fn set_last_seen_ago(conn: &mut PgConnection, user_id: i64, ago: TimeDelta) {
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
        presence::mark_user_online(&mut conn, id, ChangeReason::Login)
            .unwrap()
            .unwrap();
    }
    // now() is fixed inside a transaction, so "exactly the window ago" is exact here.
    let (mut changed, second) = conn
        .transaction(|conn| {
            set_last_seen_ago(conn, at_boundary, WINDOW);
            set_last_seen_ago(conn, just_inside, WINDOW - TimeDelta::milliseconds(1));
            set_last_seen_ago(conn, just_outside, WINDOW + TimeDelta::milliseconds(1));
            set_last_seen_ago(conn, long_gone, TimeDelta::days(3));
            set_last_seen_ago(conn, offline, TimeDelta::days(3));
            let first = presence::mark_inactive_users_offline(conn, WINDOW)?;
            let second = presence::mark_inactive_users_offline(conn, WINDOW)?;
            diesel::QueryResult::Ok((first, second))
        })
        .unwrap();
    changed.sort_unstable();
    assert_eq!(changed, vec![just_outside, long_gone]);
    assert_eq!(
        second,
        Vec::<i64>::new(),
        "a second sweep has nothing left to do"
    );
}

#[test]
fn readers_never_see_online_past_the_window_even_without_a_sweep() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let (fresh, stale) = (user(&db, "fresh"), user(&db, "stale"));
    presence::mark_user_online(&mut conn, fresh, ChangeReason::Login).unwrap();
    presence::mark_user_online(&mut conn, stale, ChangeReason::Login).unwrap();
    set_last_seen_ago(&mut conn, stale, WINDOW + TimeDelta::seconds(1));

    assert_eq!(
        presence::get_online_users_count(&mut conn, WINDOW).unwrap(),
        1
    );
    let status = presence::get_user_online_status(&mut conn, stale, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(status.online_status, OnlineStatus::Offline);
    let mut ids = |status| {
        let query = users::UserQuery {
            status: Some(status),
            limit: 10,
            ..Default::default()
        };
        let page = users::list_users(&mut conn, WINDOW, &query).unwrap();
        page.users.iter().map(|u| u.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(OnlineStatus::Online), vec![fresh]);
    assert_eq!(ids(OnlineStatus::Offline), vec![stale]);
    assert!(
        presence::get_user_online_status(&mut conn, 999_999, WINDOW)
            .unwrap()
            .is_none()
    );
}

#[test]
fn transitions_are_reported_once() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let id = user(&db, "alice");
    let first = presence::mark_user_online(&mut conn, id, ChangeReason::Login)
        .unwrap()
        .unwrap();
    let change = first.change.clone().expect("a transition");
    assert_eq!(
        (change.from, change.to, change.reason),
        (
            OnlineStatus::Offline,
            OnlineStatus::Online,
            ChangeReason::Login
        )
    );
    assert_eq!(Some(change.at), first.user.last_seen);
    assert!(first.user.last_seen.is_some());
    let again = presence::mark_user_online(&mut conn, id, ChangeReason::Login)
        .unwrap()
        .unwrap();
    assert_eq!(again.change, None);
    assert!(again.user.last_seen >= first.user.last_seen);
    assert!(
        presence::mark_user_online(&mut conn, 424_242, ChangeReason::Login)
            .unwrap()
            .is_none()
    );
}

#[test]
fn logout_keeps_user_online_while_another_session_is_live() {
    let db = TestDatabase::new();
    user(&db, "multi");
    let phone = users::log_in(db.pool(), "multi", "password123").unwrap();
    let laptop = users::log_in(db.pool(), "MULTI", "password123").unwrap();
    let mut conn = db.pool().get().unwrap();

    let after_phone = sessions::log_out(&mut conn, phone.session_id, WINDOW)
        .unwrap()
        .unwrap();
    assert!(after_phone.update.is_none(), "laptop session still live");
    assert!(
        presence::record_activity(&mut conn, phone.token.expose(), TTL, ChangeReason::Activity)
            .unwrap()
            .is_none()
    );
    let after_laptop = sessions::log_out(&mut conn, laptop.session_id, WINDOW)
        .unwrap()
        .unwrap();
    let change = after_laptop.update.unwrap().change.unwrap();
    assert_eq!(
        (change.from, change.to, change.reason),
        (
            OnlineStatus::Online,
            OnlineStatus::Offline,
            ChangeReason::Logout
        )
    );
    // Logging out twice changes nothing.
    assert!(
        sessions::log_out(&mut conn, laptop.session_id, WINDOW)
            .unwrap()
            .is_none()
    );
}

#[test]
fn expired_sessions_stop_working() {
    let db = TestDatabase::new();
    user(&db, "sleepy");
    let login = users::log_in(db.pool(), "sleepy", "password123").unwrap();
    let mut conn = db.pool().get().unwrap();
    sql_query("UPDATE sessions SET last_seen = now() - interval '2 hours' WHERE id = $1")
        .bind::<BigInt, _>(login.session_id)
        .execute(&mut conn)
        .unwrap();
    let ttl = TimeDelta::hours(1);
    assert!(
        presence::record_activity(&mut conn, login.token.expose(), ttl, ChangeReason::Activity)
            .unwrap()
            .is_none()
    );
    assert!(
        presence::record_activity(&mut conn, login.token.expose(), TTL, ChangeReason::Activity)
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
        presence::mark_user_online(&mut conn, id, ChangeReason::Login).unwrap();
    }
    set_last_seen_ago(&mut conn, held, WINDOW + TimeDelta::seconds(10));
    set_last_seen_ago(&mut conn, gone, WINDOW + TimeDelta::seconds(40));
    // A replica that reported a second ago has written everything it saw until 20 s ago
    // (PostgreSQL was down since, say): `held` may have been active after that.
    let cutoff = chrono::Utc::now() - TimeDelta::seconds(20);
    presence::flush_last_seen(&mut conn, "api-a", cutoff, &[], TimeDelta::zero()).unwrap();
    assert_eq!(
        presence::mark_inactive_users_offline(&mut conn, WINDOW).unwrap(),
        vec![gone]
    );
    // A replica silent for a whole window is presumed gone: it holds nothing back.
    sql_query("UPDATE activity_flushes SET reported_at = now() - $1")
        .bind::<Interval, _>(WINDOW + TimeDelta::seconds(1))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(
        presence::mark_inactive_users_offline(&mut conn, WINDOW).unwrap(),
        vec![held]
    );
    // So does one that stopped gracefully.
    presence::mark_user_online(&mut conn, held, ChangeReason::Login).unwrap();
    set_last_seen_ago(&mut conn, held, WINDOW + TimeDelta::seconds(10));
    presence::flush_last_seen(&mut conn, "api-a", cutoff, &[], TimeDelta::zero()).unwrap();
    assert!(
        presence::mark_inactive_users_offline(&mut conn, WINDOW)
            .unwrap()
            .is_empty()
    );
    presence::forget_replica(&mut conn, "api-a").unwrap();
    assert_eq!(
        presence::mark_inactive_users_offline(&mut conn, WINDOW).unwrap(),
        vec![held]
    );
}
