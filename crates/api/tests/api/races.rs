//! Racing requests across two API processes on one database, released together by a
//! barrier, over several trials: no 5xx, exactly the transitions that happened, and the
//! stored status is the truth afterwards.

use std::sync::Barrier;
use std::time::Duration;

use presence_api::testing::{PASSWORD, spawn_api};
use presence_model::testing::TestDatabase;
use presence_testkit::{Process, RedisKeys, raw_http as http};

/// A request to send: (port, method, path, token, body).
type Request = (u16, &'static str, &'static str, Option<String>, String);

/// Sends `requests` at once; returns (status, body) of each, in order.
fn at_once(requests: &[Request]) -> Vec<(u16, String)> {
    let barrier = Barrier::new(requests.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(port, method, path, token, body)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    http(*port, method, path, token.as_deref(), body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn token_of(body: &str) -> String {
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// The user's transitions, oldest first, as (from, to, reason).
fn transitions(db: &TestDatabase, user: &str) -> Vec<(String, String, String)> {
    let mut conn = db.pool().get().unwrap();
    let id = db.query_i64(&format!(
        "SELECT id AS n FROM users WHERE username = '{user}'"
    ));
    let mut events =
        presence_model::feed::presence_history(&mut conn, presence_model::ids::UserId(id), 1000)
            .unwrap()
            .unwrap();
    events.reverse();
    events
        .into_iter()
        .map(|e| {
            (
                e.from.as_str().into(),
                e.to.as_str().into(),
                e.reason.as_str().into(),
            )
        })
        .collect()
}

fn stored_online(db: &TestDatabase, user: &str) -> bool {
    db.query_i64(&format!(
        "SELECT count(*) AS n FROM users WHERE username = '{user}' AND online_status = 'online'"
    )) == 1
}

fn live_sessions(db: &TestDatabase, user: &str) -> i64 {
    db.query_i64(&format!(
        "SELECT count(*) AS n FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE u.username = '{user}' AND s.revoked_at IS NULL"
    ))
}

#[test]
fn logins_and_logouts_racing_across_two_replicas() {
    let db = TestDatabase::new();
    let _keys = RedisKeys::of(&db);
    // Every login hashes at once, so the transactions behind them really overlap.
    let env = [("PASSWORD_HASHES_IN_FLIGHT", "20")];
    let replicas: Vec<Process> = (0..2)
        .map(|_| spawn_api(env!("CARGO_BIN_EXE_presence-api"), &db, &env))
        .collect();
    let ports: Vec<u16> = replicas.iter().map(Process::port).collect();
    let credentials = |user: &str| format!(r#"{{"username": "{user}", "password": "{PASSWORD}"}}"#);

    for trial in 0..3 {
        let user = format!("tabs{trial}");
        assert_eq!(
            http(
                ports[0],
                "POST",
                "/api/users/register/",
                None,
                &credentials(&user)
            )
            .0,
            201
        );
        // 20 tabs restored at once, half through each replica.
        let logins: Vec<Request> = (0..20)
            .map(|i| {
                (
                    ports[i % 2],
                    "POST",
                    "/api/users/login/",
                    None,
                    credentials(&user),
                )
            })
            .collect();
        let answers = at_once(&logins);
        assert!(
            answers.iter().all(|(s, _)| *s == 200),
            "trial {trial}: {answers:?}"
        );
        let tokens: Vec<String> = answers.iter().map(|(_, body)| token_of(body)).collect();
        assert_eq!(
            transitions(&db, &user),
            [("offline".into(), "online".into(), "login".into())],
            "trial {trial}"
        );

        // A third of the tabs log out while a third send heartbeats and a third log in again.
        let mixed: Vec<Request> = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let port = ports[i % 2];
                match i % 3 {
                    0 => (
                        port,
                        "POST",
                        "/api/users/logout/",
                        Some(token.clone()),
                        String::new(),
                    ),
                    1 => (
                        port,
                        "POST",
                        "/api/users/heartbeat/",
                        Some(token.clone()),
                        String::new(),
                    ),
                    _ => (port, "POST", "/api/users/login/", None, credentials(&user)),
                }
            })
            .collect();
        let answers = at_once(&mixed);
        assert!(
            answers.iter().all(|(s, _)| matches!(s, 200 | 204)),
            "trial {trial}: {answers:?}"
        );
        assert!(
            stored_online(&db, &user),
            "trial {trial}: sessions are still live"
        );

        // Every live session logs out at once, across both replicas.
        let mut live: Vec<String> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, token)| token.clone())
            .collect();
        live.extend(
            mixed
                .iter()
                .zip(&answers)
                .filter(|((_, _, path, _, _), _)| path.ends_with("/login/"))
                .map(|(_, (_, body))| token_of(body)),
        );
        assert_eq!(
            live_sessions(&db, &user),
            live.len() as i64,
            "trial {trial}"
        );
        let logouts: Vec<Request> = live
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                (
                    ports[i % 2],
                    "POST",
                    "/api/users/logout/",
                    Some(token),
                    String::new(),
                )
            })
            .collect();
        let answers = at_once(&logouts);
        assert!(
            answers.iter().all(|(s, _)| *s == 204),
            "trial {trial}: {answers:?}"
        );
        assert_eq!(live_sessions(&db, &user), 0, "trial {trial}");
        assert!(
            !stored_online(&db, &user),
            "trial {trial}: no live session is left"
        );
        assert_eq!(
            transitions(&db, &user),
            [
                ("offline".into(), "online".into(), "login".into()),
                ("online".into(), "offline".into(), "logout".into())
            ],
            "trial {trial}"
        );
    }
    for replica in replicas {
        let (status, log) = replica.terminate(Duration::from_secs(15));
        assert!(status.is_some_and(|s| s.success()), "{log}");
    }
}
