//! The shown-presence rule is written twice, in Rust (`UserFacts::presence_at`, what
//! reads and the API's cache use) and in SQL (`presence_of` and `presence_public`, what
//! filters and counts use): over generated facts, edges included (exactly at the window,
//! at the away timeout, at a manual status's end, a microsecond either side), both answer
//! the same.

use std::cell::RefCell;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz};
use presence_model::OnlineStatus;
use presence_model::events::Transition;
use presence_model::facts::UserFacts;
use presence_model::ids::UserId;
use presence_model::shown::ShownRow;
use presence_model::sweeps;
use presence_model::testing::{TIMINGS, TestDatabase, register, sql_presence};
use presence_model::views::{PublicStatus, StatusDetails};
use presence_model::vocabulary::{Availability, ChangeReason, Presence};
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

/// What others were last told of a user: always a status they could be shown, so no
/// custom status or dnd end with offline, and a dnd end only with dnd.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Told {
    presence: Presence,
    details: StatusDetails,
}

impl Told {
    fn of(status: &PublicStatus) -> Self {
        Self {
            presence: status.presence,
            details: status.details.clone(),
        }
    }
}

fn told() -> impl Strategy<Value = Told> {
    let presence = prop_oneof![
        Just(Presence::Online),
        Just(Presence::Away),
        Just(Presence::Dnd),
        Just(Presence::Offline),
    ];
    (
        presence,
        proptest::option::of(Just("told".to_owned())),
        proptest::option::of(Just("🌴".to_owned())),
        time(),
    )
        .prop_map(|(presence, text, emoji, dnd_until)| {
            let connected = presence != Presence::Offline;
            Told {
                presence,
                details: StatusDetails {
                    status_text: text.filter(|_| connected),
                    status_emoji: emoji.filter(|_| connected),
                    dnd_until: dnd_until.filter(|_| presence == Presence::Dnd),
                },
            }
        })
}

/// A connected user silent for more than the window (by a microsecond up to two away
/// timeouts), with any availability and custom status the schema allows.
fn silent() -> impl Strategy<Value = UserFacts> {
    let availability = prop_oneof![
        Just(Availability::Auto),
        Just(Availability::Away),
        Just(Availability::Dnd),
        Just(Availability::Invisible),
    ];
    let span = 2 * TIMINGS.away_after().num_microseconds().unwrap();
    (
        1..span,
        time(),
        availability,
        time(),
        time(),
        proptest::option::of(Just("lunch".to_owned())),
        time(),
    )
        .prop_map(
            |(silent_micros, active_at, availability, until, since, text, expires)| {
                let manual = matches!(availability, Availability::Away | Availability::Dnd);
                let invisible = availability == Availability::Invisible;
                UserFacts {
                    id: UserId(0),
                    connected: OnlineStatus::Online,
                    last_seen: Some(
                        at() - TIMINGS.window() - TimeDelta::microseconds(silent_micros),
                    ),
                    active_at,
                    availability,
                    availability_until: until.filter(|_| manual),
                    invisible_since: since.or(Some(at())).filter(|_| invisible),
                    status_text: text,
                    status_emoji: None,
                    status_expires_at: expires,
                }
            },
        )
}

/// `facts` and `told` moved by `by` in time, as user `id`'s.
fn moved(id: UserId, facts: &UserFacts, told: &Told, by: TimeDelta) -> (UserFacts, Told) {
    let move_ = |time: Option<DateTime<Utc>>| time.map(|time| time + by);
    let facts = UserFacts {
        id,
        last_seen: move_(facts.last_seen),
        active_at: move_(facts.active_at),
        availability_until: move_(facts.availability_until),
        invisible_since: move_(facts.invisible_since),
        status_expires_at: move_(facts.status_expires_at),
        ..facts.clone()
    };
    let told = Told {
        details: StatusDetails {
            dnd_until: move_(told.details.dnd_until),
            ..told.details.clone()
        },
        ..told.clone()
    };
    (facts, told)
}

/// Stores `facts` and `told` as their user's row.
fn store(conn: &mut PgConnection, facts: &UserFacts, told: &Told) -> QueryResult<usize> {
    sql_query(
        "UPDATE users SET online_status = $2, last_seen = $3, active_at = $4, \
           availability = $5, availability_until = $6, invisible_since = $7, \
           status_text = $8, status_expires_at = $9, published_presence = $10, \
           published_details = $11 WHERE id = $1",
    )
    .bind::<BigInt, _>(facts.id)
    .bind::<Text, _>(facts.connected)
    .bind::<Nullable<Timestamptz>, _>(facts.last_seen)
    .bind::<Nullable<Timestamptz>, _>(facts.active_at)
    .bind::<Text, _>(facts.availability)
    .bind::<Nullable<Timestamptz>, _>(facts.availability_until)
    .bind::<Nullable<Timestamptz>, _>(facts.invisible_since)
    .bind::<Nullable<Text>, _>(&facts.status_text)
    .bind::<Nullable<Timestamptz>, _>(facts.status_expires_at)
    .bind::<Text, _>(told.presence)
    .bind::<Nullable<Jsonb>, _>(&told.details)
    .execute(conn)
}

#[test]
fn the_sweep_records_what_the_rust_rule_shows_others_of_a_user_it_disconnects() {
    let db = TestDatabase::new();
    let id = register(&db, "silent");
    let conn = RefCell::new(db.pool().get().unwrap());
    let mut runner = TestRunner::new(Config {
        cases: 500,
        ..Config::default()
    });
    runner
        .run(&(silent(), told()), |(facts, told)| {
            let conn = &mut *conn.borrow_mut();
            // Each case in a transaction rolled back after it, so every case starts alike;
            // its facts moved to the transaction's time, which the sweep reads as now.
            let mut outcome = None;
            let rolled_back = conn.transaction::<(), _, _>(|conn| {
                let now: DateTime<Utc> =
                    diesel::select(diesel::dsl::now.into_sql::<Timestamptz>()).get_result(conn)?;
                let (facts, told) = moved(id, &facts, &told, now - at());
                store(conn, &facts, &told)?;
                let recorded = sweeps::sweep(conn, TIMINGS, TimeDelta::zero())?;
                outcome = Some((now, facts, told, recorded));
                Err(diesel::result::Error::RollbackTransaction)
            });
            assert!(
                matches!(rolled_back, Err(diesel::result::Error::RollbackTransaction)),
                "{rolled_back:?}"
            );
            let (now, facts, told, recorded) = outcome.expect("the sweep ran");
            let recorded: Vec<&Transition> = recorded
                .iter()
                .filter(|change| change.user_id == id)
                .collect();
            // The Rust rule, of the same user once disconnected.
            let gone = UserFacts {
                connected: OnlineStatus::Offline,
                ..facts
            };
            let shown = ShownRow::from_facts(&gone, TIMINGS, now).shown_to_others();
            if Told::of(&shown) == told {
                prop_assert!(recorded.is_empty(), "{:?}", recorded);
            } else {
                prop_assert_eq!(recorded.len(), 1, "{:?}", recorded);
                let change = recorded[0];
                prop_assert_eq!(change.from, told.presence);
                prop_assert_eq!(change.status(), shown.clone());
                let reason = if shown.presence == told.presence {
                    ChangeReason::Expiry
                } else {
                    ChangeReason::Sweep
                };
                prop_assert_eq!(change.reason, reason);
            }
            Ok(())
        })
        .unwrap();
}
