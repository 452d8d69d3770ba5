//! Presence writes fired at once from many connections (a barrier releases them
//! together), over many trials: no deadlock, no lost transition, and the stored status is
//! the truth afterwards.

use std::sync::Barrier;

use chrono::TimeDelta;
use diesel::{Connection, PgConnection};
use presence_model::events::Transition;
use presence_model::feed;
use presence_model::ids::{SessionId, UserId};
use presence_model::manual;
use presence_model::shown;
use presence_model::testing::{TIMINGS, TestDatabase, register};
use presence_model::vocabulary::ChangeReason;
use presence_model::vocabulary::Presence;
use presence_model::{sessions, users};

const TTL: TimeDelta = TimeDelta::days(30);

/// Runs `f(i)` on `n` threads, each with a connection of its own (not from the test
/// pool, which is smaller than `n`), released together.
fn at_once<T: Send>(
    db: &TestDatabase,
    n: usize,
    f: impl Fn(usize, &mut PgConnection) -> T + Sync,
) -> Vec<T> {
    let barrier = Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                scope.spawn(move || {
                    let mut conn = PgConnection::establish(db.url()).expect("connection");
                    barrier.wait();
                    f(i, &mut conn)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn history(db: &TestDatabase, user_id: UserId) -> Vec<Transition> {
    let mut conn = db.pool().get().unwrap();
    let mut events = feed::presence_history(&mut conn, user_id, 1000)
        .unwrap()
        .unwrap();
    events.reverse();
    events
}

fn stored_status(db: &TestDatabase, user_id: UserId) -> String {
    let online = db.query_i64(&format!(
        "SELECT count(*) AS n FROM users WHERE id = {user_id} AND online_status = 'online'"
    ));
    if online == 1 { "online" } else { "offline" }.to_owned()
}

/// Transitions alternate, start from offline, and end at the stored status.
fn assert_consistent(db: &TestDatabase, user_id: UserId) {
    let events = history(db, user_id);
    let mut state = Presence::Offline;
    for event in &events {
        assert_eq!(event.from, state, "{events:?}");
        assert_ne!(event.from, event.to, "{events:?}");
        state = event.to;
    }
    assert_eq!(
        state.online_status().as_str(),
        stored_status(db, user_id),
        "{events:?}"
    );
}

#[test]
fn twenty_simultaneous_logins_of_one_user_all_succeed_with_one_transition() {
    let db = TestDatabase::new();
    for trial in 0..10 {
        let id = register(&db, &format!("tabs{trial}"));
        let outcomes = at_once(&db, 20, |_, conn| users::open_session(conn, TIMINGS, id));
        let failures: Vec<_> = outcomes.iter().filter(|o| o.is_err()).collect();
        assert!(failures.is_empty(), "trial {trial}: {failures:?}");
        let events = history(&db, id);
        assert_eq!(events.len(), 1, "trial {trial}: {events:?}");
        assert_eq!(events[0].reason, ChangeReason::Login);
        assert_eq!(
            db.query_i64(&format!(
                "SELECT count(*) AS n FROM sessions WHERE user_id = {id}"
            )),
            20
        );
        assert_consistent(&db, id);
    }
}

#[test]
fn simultaneous_logouts_of_the_last_sessions_take_the_user_offline() {
    let db = TestDatabase::new();
    for trial in 0..30 {
        let id = register(&db, &format!("two{trial}"));
        let mut conn = db.pool().get().unwrap();
        let sessions: Vec<SessionId> = (0..2)
            .map(|_| {
                users::open_session(&mut conn, TIMINGS, id)
                    .unwrap()
                    .unwrap()
                    .session_id
            })
            .collect();
        drop(conn);
        let outcomes = at_once(&db, 2, |i, conn| {
            sessions::log_out(conn, TIMINGS, sessions[i])
                .unwrap()
                .expect("revoked")
        });
        let went_offline = outcomes
            .iter()
            .filter(|o| o.presence.transition.is_some())
            .count();
        assert_eq!(went_offline, 1, "trial {trial}");
        assert_eq!(stored_status(&db, id), "offline", "trial {trial}");
        let reasons: Vec<_> = history(&db, id).iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            [ChangeReason::Login, ChangeReason::Logout],
            "trial {trial}"
        );
    }
}

#[test]
fn interleaved_logins_logouts_and_activity_leave_the_truth() {
    let db = TestDatabase::new();
    for trial in 0..10 {
        let id = register(&db, &format!("mixed{trial}"));
        let mut conn = db.pool().get().unwrap();
        let existing: Vec<_> = (0..6)
            .map(|_| {
                users::open_session(&mut conn, TIMINGS, id)
                    .unwrap()
                    .unwrap()
            })
            .collect();
        drop(conn);
        // Six threads log a session out, six use one, six log in anew.
        at_once(&db, 18, |i, conn| match i % 3 {
            0 => {
                sessions::log_out(conn, TIMINGS, existing[i / 3].session_id).unwrap();
            }
            1 => {
                presence_model::presence::record_activity(
                    conn,
                    TIMINGS,
                    existing[i / 3].token.expose(),
                    TTL,
                    ChangeReason::Activity,
                    true,
                )
                .unwrap();
            }
            _ => {
                users::open_session(conn, TIMINGS, id).unwrap().unwrap();
            }
        });
        let live = db.query_i64(&format!(
            "SELECT count(*) AS n FROM sessions WHERE user_id = {id} AND revoked_at IS NULL"
        ));
        assert_eq!(live, 6, "trial {trial}");
        assert_eq!(stored_status(&db, id), "online", "trial {trial}");
        assert_consistent(&db, id);
    }
}

#[test]
fn manual_statuses_racing_logins_activity_and_logouts_keep_one_chain_of_transitions() {
    use presence_model::manual::{StatusUpdate, Update};
    use presence_model::vocabulary::Availability;
    let db = TestDatabase::new();
    let availabilities = Availability::ALL;
    for trial in 0..10 {
        let id = register(&db, &format!("manual{trial}"));
        let mut conn = db.pool().get().unwrap();
        let existing: Vec<_> = (0..4)
            .map(|_| {
                users::open_session(&mut conn, TIMINGS, id)
                    .unwrap()
                    .unwrap()
            })
            .collect();
        drop(conn);
        // Four threads set a manual status, four use a session, four log one out, four
        // log in anew: all released together.
        at_once(&db, 16, |i, conn| match i % 4 {
            0 => {
                let change = StatusUpdate {
                    availability: Update::Set((availabilities[i / 4], None)),
                    ..Default::default()
                };
                manual::set_status(conn, TIMINGS, id, &change)
                    .unwrap()
                    .expect("the user exists");
            }
            1 => {
                presence_model::presence::record_activity(
                    conn,
                    TIMINGS,
                    existing[i / 4].token.expose(),
                    TTL,
                    ChangeReason::Activity,
                    true,
                )
                .unwrap();
            }
            2 => {
                sessions::log_out(conn, TIMINGS, existing[i / 4].session_id).unwrap();
            }
            _ => {
                users::open_session(conn, TIMINGS, id).unwrap().unwrap();
            }
        });
        // Every transition starts where the previous one ended, and the last is what
        // others are shown now.
        let events = history(&db, id);
        let mut told = Presence::Offline;
        for event in &events {
            assert_eq!(event.from, told, "trial {trial}: {events:?}");
            assert_ne!(event.from, event.to, "trial {trial}: {events:?}");
            told = event.to;
        }
        let mut conn = db.pool().get().unwrap();
        let shown = shown::shown_status(&mut conn, TIMINGS, id)
            .unwrap()
            .unwrap()
            .shown_to_others();
        assert_eq!(shown.presence, told, "trial {trial}: {events:?}");
    }
}

#[test]
fn logging_out_everywhere_racing_logins_leaves_the_user_online_exactly_if_a_session_lives() {
    let db = TestDatabase::new();
    for trial in 0..10 {
        let id = register(&db, &format!("everywhere{trial}"));
        users::open_session(&mut db.pool().get().unwrap(), TIMINGS, id)
            .unwrap()
            .unwrap();
        // Two logouts everywhere and six logins, released together.
        let outcomes = at_once(&db, 8, |i, conn| {
            if i % 4 == 0 {
                sessions::log_out_everywhere(conn, TIMINGS, id)
                    .map(|out| out.is_some())
                    .map_err(|e| e.to_string())
            } else {
                users::open_session(conn, TIMINGS, id)
                    .map(|opened| opened.is_some())
                    .map_err(|e| e.to_string())
            }
        });
        assert!(outcomes.iter().all(|o| o == &Ok(true)), "{outcomes:?}");
        assert_consistent(&db, id);
        let live = db.query_i64(&format!(
            "SELECT count(*) AS n FROM sessions WHERE user_id = {id} AND revoked_at IS NULL"
        ));
        let online = stored_status(&db, id) == "online";
        assert_eq!(
            online,
            live > 0,
            "trial {trial}: online {online}, {live} live sessions"
        );
    }
}

#[test]
fn a_sweep_racing_manual_statuses_of_silent_users_keeps_one_chain_of_transitions() {
    use presence_model::manual::{StatusUpdate, Update};
    use presence_model::sweeps;
    use presence_model::vocabulary::Availability;
    let db = TestDatabase::new();
    let availabilities = Availability::ALL;
    let sweep = |conn: &mut PgConnection| {
        conn.transaction(|conn| sweeps::sweep(conn, TIMINGS, TimeDelta::zero()))
            .unwrap()
    };
    for trial in 0..20 {
        // Eight users told online, silent for longer than the window.
        let ids: Vec<UserId> = (0..8)
            .map(|n| {
                let id = register(&db, &format!("silent{trial}x{n}"));
                users::open_session(&mut db.pool().get().unwrap(), TIMINGS, id)
                    .unwrap()
                    .unwrap();
                id
            })
            .collect();
        let listed = ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
        db.execute(&format!(
            "UPDATE users SET last_seen = now() - interval '1 hour' WHERE id IN ({})",
            listed.join(", ")
        ));
        // A sweep, and a manual status for each of them (which tells others they are
        // offline: nobody is connected), released together.
        at_once(&db, 9, |i, conn| {
            if i == 0 {
                sweep(conn);
                return;
            }
            let change = StatusUpdate {
                availability: Update::Set((availabilities[(trial + i) % 4], None)),
                ..Default::default()
            };
            manual::set_status(conn, TIMINGS, ids[i - 1], &change)
                .unwrap()
                .expect("the user exists");
        });
        // The next tick takes whoever that one passed over.
        sweep(&mut db.pool().get().unwrap());
        for &id in &ids {
            assert_eq!(stored_status(&db, id), "offline", "trial {trial}");
            // So the chain ends offline too.
            assert_consistent(&db, id);
        }
    }
}
