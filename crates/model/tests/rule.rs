//! The shown-presence rule is written twice, in Rust (`UserFacts::presence_at`, what
//! reads and the API's cache use) and in SQL (`presence_of` and `presence_public`, what
//! filters and counts use): over generated facts, edges included (exactly at the window,
//! at the away timeout, at a manual status's end, a microsecond either side), both answer
//! the same.

use std::cell::RefCell;

use chrono::{DateTime, TimeDelta, Utc};
use presence_model::OnlineStatus;
use presence_model::facts::UserFacts;
use presence_model::ids::UserId;
use presence_model::testing::{TIMINGS, TestDatabase, sql_presence};
use presence_model::vocabulary::Availability;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T12:00:00.123456Z")
        .unwrap()
        .into()
}

/// A time near `at`: none, one of the rule's edges give or take a microsecond, or any
/// time within two away timeouts either side.
fn time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    let edges = [TimeDelta::zero(), TIMINGS.window(), TIMINGS.away_after()];
    let span = 2 * TIMINGS.away_after().num_microseconds().unwrap();
    prop_oneof![
        Just(None),
        (0..edges.len(), -1i64..=1).prop_map(move |(edge, nudge)| Some(
            at() - edges[edge] + TimeDelta::microseconds(nudge)
        )),
        (-span..span).prop_map(|micros| Some(at() + TimeDelta::microseconds(micros))),
    ]
}

fn facts() -> impl Strategy<Value = UserFacts> {
    let connected = prop_oneof![Just(OnlineStatus::Online), Just(OnlineStatus::Offline)];
    let availability = prop_oneof![
        Just(Availability::Auto),
        Just(Availability::Away),
        Just(Availability::Dnd),
        Just(Availability::Invisible),
    ];
    (connected, time(), time(), availability, time()).prop_map(
        |(connected, last_seen, active_at, availability, availability_until)| UserFacts {
            id: UserId(1),
            connected,
            last_seen,
            active_at,
            availability,
            availability_until,
            invisible_since: None,
            status_text: None,
            status_emoji: None,
            status_expires_at: None,
        },
    )
}

#[test]
fn the_rust_rule_and_the_sql_functions_agree() {
    let db = TestDatabase::new();
    let conn = RefCell::new(db.pool().get().unwrap());
    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        ..Config::default()
    });
    runner
        .run(&facts(), |facts| {
            let (of, public) = sql_presence(&mut conn.borrow_mut(), &facts, TIMINGS, at());
            prop_assert_eq!(facts.presence_at(TIMINGS, at()), of, "presence_of");
            prop_assert_eq!(
                facts.public_presence_at(TIMINGS, at()),
                public,
                "presence_public"
            );
            Ok(())
        })
        .unwrap();
}
