//! The operator page's samples against a real PostgreSQL database: what one sample
//! counts, every published transition counted exactly once (also when two workers sample
//! at once), the buckets the history is read in, and the purge past a day.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use presence_model::ids::UserId;
use presence_model::samples::{self, HistoryPoint, SweepFigures};
use presence_model::testing::{TIMINGS, TestDatabase, register};
use presence_model::vocabulary::ChangeReason;
use presence_model::{events, presence, purges, settings};

const FIGURES: SweepFigures = SweepFigures {
    took: Duration::from_millis(7),
    users_marked_offline: 2,
};

/// The start of the minute ten minutes ago, and `seconds` after it.
fn tick(seconds: i64) -> DateTime<Utc> {
    let minute = (Utc::now() - TimeDelta::minutes(10))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap();
    minute + TimeDelta::seconds(seconds)
}

fn log_in(db: &TestDatabase, name: &str) -> UserId {
    let mut conn = db.pool().get().unwrap();
    let id = register(db, name);
    presence::mark_user_online(&mut conn, TIMINGS, id, ChangeReason::Login).unwrap();
    id
}

fn publish_everything(db: &TestDatabase) {
    let mut conn = db.pool().get().unwrap();
    while events::publish_pending(&mut conn, 100, |_| Ok(())).unwrap() > 0 {}
}

fn sample(db: &TestDatabase, at: DateTime<Utc>, streams: Option<u64>) {
    let mut conn = db.pool().get().unwrap();
    samples::record_sample(&mut conn, at, FIGURES, streams).unwrap();
}

fn hour(db: &TestDatabase) -> Vec<HistoryPoint> {
    let mut conn = db.pool().get().unwrap();
    samples::history(&mut conn, TimeDelta::hours(1), TimeDelta::minutes(1)).unwrap()
}

fn logins_counted(db: &TestDatabase) -> i64 {
    db.query_i64("SELECT coalesce(sum(transitions_login), 0)::int8 AS n FROM presence_samples")
}

#[test]
fn a_sample_counts_connected_users_and_each_published_transition_once() {
    let db = TestDatabase::new();
    settings::agree_on_timings(&mut db.pool().get().unwrap(), TIMINGS).unwrap();
    log_in(&db, "alice");
    let bob = log_in(&db, "bob");
    register(&db, "carol"); // never connected: not counted
    db.execute(&format!(
        "UPDATE users SET availability = 'dnd' WHERE id = {}",
        bob.0
    ));
    // The logins wait to be published, recorded 5 s ago.
    db.execute("UPDATE presence_events SET recorded_at = now() - interval '5 seconds'");

    sample(&db, tick(0), Some(3));
    let first = db.query_i64("SELECT publish_lag_ms::int8 AS n FROM presence_samples");
    assert!((5000..60_000).contains(&first), "{first}");
    // The first sample starts the count: nothing before it is counted.
    assert_eq!(logins_counted(&db), 0);

    publish_everything(&db);
    sample(&db, tick(1), None);
    assert_eq!(logins_counted(&db), 2, "published since the last sample");
    sample(&db, tick(2), Some(4));
    sample(&db, tick(1), Some(9)); // the same tick again: ignored
    assert_eq!(logins_counted(&db), 2, "each counted once");
    assert_eq!(
        db.query_i64("SELECT count(*) AS n FROM presence_samples"),
        3
    );

    let points = hour(&db);
    assert_eq!(points.len(), 1, "{points:?}");
    let point = &points[0];
    assert_eq!(point.at, tick(0));
    assert_eq!((point.online, point.away, point.dnd), (1, 0, 1));
    assert_eq!(point.samples, 3);
    assert_eq!(point.transitions.login, 2);
    assert_eq!(point.transitions.logout, 0);
    assert_eq!(point.swept, 6, "summed over the bucket's sweeps");
    assert_eq!(point.sweep_ms, 7, "the slowest");
    assert_eq!(point.streams_open, Some(4), "the bucket's last sample");
    assert!(point.publish_lag_ms >= 5000, "the largest");
}

#[test]
fn the_history_is_bucketed_and_bounded_and_old_samples_are_purged() {
    let db = TestDatabase::new();
    settings::agree_on_timings(&mut db.pool().get().unwrap(), TIMINGS).unwrap();
    sample(&db, tick(-60), Some(1)); // the minute before
    sample(&db, tick(0), Some(2));
    sample(&db, tick(30), None); // a replica's count unknown: null, not 0
    sample(&db, Utc::now() - TimeDelta::hours(2), Some(5)); // outside the hour
    sample(&db, Utc::now() - TimeDelta::hours(26), Some(5)); // past the day kept

    let points = hour(&db);
    let at: Vec<_> = points
        .iter()
        .map(|p| (p.at, p.samples, p.streams_open))
        .collect();
    assert_eq!(
        at,
        [(tick(-60), 1, Some(1)), (tick(0), 2, None)],
        "oldest first, one point per minute with samples"
    );
    let mut conn = db.pool().get().unwrap();
    let day = samples::history(&mut conn, TimeDelta::days(1), TimeDelta::minutes(5)).unwrap();
    assert_eq!(day.iter().map(|p| p.samples).sum::<i64>(), 4);

    assert_eq!(
        purges::purge_samples(&mut conn, samples::KEEP, 1000).unwrap(),
        1
    );
    assert_eq!(
        db.query_i64("SELECT count(*) AS n FROM presence_samples"),
        4
    );
}

/// Two workers sampling different ticks at once (a burst of ticks after an outage) never
/// count a transition twice or miss one: over many trials, the samples' counts add up to
/// exactly the transitions published.
#[test]
fn concurrent_samples_count_every_transition_exactly_once() {
    let db = Arc::new(TestDatabase::new());
    settings::agree_on_timings(&mut db.pool().get().unwrap(), TIMINGS).unwrap();
    sample(&db, tick(-1), None);
    let mut logged_in = 0;
    for trial in 0..20 {
        for n in 0..3 {
            log_in(&db, &format!("user{trial}x{n}"));
            logged_in += 1;
        }
        publish_everything(&db);
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|side| {
                let (db, barrier) = (db.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut conn = db.pool().get().unwrap();
                    barrier.wait();
                    samples::record_sample(&mut conn, tick(trial * 2 + side), FIGURES, None)
                        .unwrap();
                })
            })
            .collect();
        for racer in racers {
            racer.join().unwrap();
        }
        assert_eq!(logins_counted(&db), logged_in, "trial {trial}");
    }
}
