//! The event log's partitions against a real PostgreSQL database: rows land in the
//! partitions made ahead, retention drops whole partitions once they are published and
//! old, and a resume never silently misses what went with them.

use chrono::{TimeDelta, Utc};
use presence_model::feed::{self, ResumeRefused};
use presence_model::ids::Revision;
use presence_model::testing::{TestDatabase, register};
use presence_model::{event_log, events};

const HOUR: TimeDelta = TimeDelta::hours(1);
const REACH: TimeDelta = TimeDelta::days(365);

/// Records a transition of `user` at `hours` hours from now. (The migration's partition
/// holds everything before the database was made, so these tests place the log's times
/// ahead of now and move the retention's cut-off instead of the clock.)
fn record_in(db: &TestDatabase, user: i64, hours: i64) {
    db.execute(&format!(
        "INSERT INTO presence_events (user_id, from_status, to_status, reason, at) \
         VALUES ({user}, 'online', 'away', 'idle', now() + interval '{hours} hours')"
    ));
}

fn publish_everything(conn: &mut presence_model::db::PgConnection) {
    while events::publish_pending(conn, 100, |_| Ok(())).unwrap() > 0 {}
}

fn in_default(db: &TestDatabase) -> i64 {
    db.query_i64("SELECT count(*) AS n FROM presence_events_default")
}

#[test]
fn partitions_are_made_ahead_and_rows_land_in_them() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let made = event_log::prepare_partitions(&mut conn, Utc::now(), HOUR).unwrap();
    // The one holding now, and two ahead (the first starts where the migration's ended).
    assert!((3..=4).contains(&made), "{made}");
    assert_eq!(
        event_log::prepare_partitions(&mut conn, Utc::now(), HOUR).unwrap(),
        0
    );
    let user = register(&db, "alice").0;
    record_in(&db, user, 0);
    record_in(&db, user, 2); // two hours ahead: made too
    assert_eq!(in_default(&db), 0);
    record_in(&db, user, 10); // beyond what was made: the default partition takes it
    assert_eq!(in_default(&db), 1);
    // Later partitions start after what the default partition holds, so making them
    // never conflicts with it.
    let later = event_log::prepare_partitions(&mut conn, Utc::now() + HOUR * 12, HOUR).unwrap();
    assert!(later > 0);
    record_in(&db, user, 13);
    assert_eq!(in_default(&db), 1);
}

#[test]
fn retention_drops_old_published_partitions_and_refuses_resumes_into_them() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let user = register(&db, "alice").0;
    // Hourly partitions for the next nine hours.
    for hours in [0, 2, 4, 6] {
        event_log::prepare_partitions(&mut conn, Utc::now() + HOUR * hours, HOUR).unwrap();
    }
    for hours in [1, 1, 3, 5, 6] {
        record_in(&db, user, hours);
    }
    assert_eq!(in_default(&db), 0);
    let partitions = event_log::partition_count(&mut conn).unwrap();

    // Nothing published yet: nothing is condemned, whatever its age.
    let before = Utc::now() + HOUR * 4;
    assert_eq!(
        event_log::drop_partitions(&mut conn, before, TimeDelta::zero(), 100).unwrap(),
        0
    );
    assert_eq!(
        db.query_i64("SELECT dropped_through AS n FROM event_publication"),
        0
    );
    publish_everything(&mut conn);
    let revision_of = |nth: i64| {
        Revision(db.query_i64(&format!(
            "SELECT revision AS n FROM presence_events ORDER BY revision OFFSET {nth} LIMIT 1"
        )))
    };
    let (oldest, third) = (revision_of(0), revision_of(2));

    // Condemned first (what a resume checks), dropped a grace later.
    let grace = TimeDelta::minutes(1);
    assert_eq!(
        event_log::drop_partitions(&mut conn, before, grace, 100).unwrap(),
        0
    );
    let dropped_through =
        Revision(db.query_i64("SELECT dropped_through AS n FROM event_publication"));
    assert_eq!(
        dropped_through,
        revision_of(2),
        "through the one in 3 hours"
    );
    assert!(matches!(
        feed::changes_since(&mut conn, oldest, None, REACH, 100).unwrap(),
        Err(ResumeRefused::TooOld)
    ));
    // From the last dropped revision on, nothing is missing: the two later changes, from
    // two partitions.
    let resumed = feed::changes_since(&mut conn, third, None, REACH, 100)
        .unwrap()
        .unwrap();
    assert_eq!(
        resumed
            .iter()
            .map(|c| c.revision.unwrap())
            .collect::<Vec<_>>(),
        [revision_of(3), revision_of(4)]
    );
    assert_eq!(event_log::partition_count(&mut conn).unwrap(), partitions);

    // The grace has passed (here: a zero grace): the condemned partitions go whole.
    let dropped = event_log::drop_partitions(&mut conn, before, TimeDelta::zero(), 100).unwrap();
    assert!(dropped >= 2, "{dropped}");
    assert_eq!(
        event_log::partition_count(&mut conn).unwrap(),
        partitions - i64::from(dropped)
    );
    assert_eq!(db.query_i64("SELECT count(*) AS n FROM presence_events"), 2);
    let history = feed::presence_history(&mut conn, presence_model::ids::UserId(user), 10)
        .unwrap()
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        feed::changes_since(&mut conn, third, None, REACH, 100)
            .unwrap()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_partition_still_to_be_published_is_kept_and_so_is_everything_after_it() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let user = register(&db, "alice").0;
    event_log::prepare_partitions(&mut conn, Utc::now() + HOUR, HOUR).unwrap();
    record_in(&db, user, 1);
    publish_everything(&mut conn);
    record_in(&db, user, 2); // never sent: Redis was down
    record_in(&db, user, 3);
    events::publish_pending(&mut conn, 100, |_| Err("redis is down".to_owned())).unwrap_err();
    let partitions = event_log::partition_count(&mut conn).unwrap();
    let before = Utc::now() + HOUR * 10;
    for _ in 0..2 {
        event_log::drop_partitions(&mut conn, before, TimeDelta::zero(), 100).unwrap();
    }
    assert_eq!(db.query_i64("SELECT count(*) AS n FROM presence_events"), 2);
    assert!(event_log::partition_count(&mut conn).unwrap() >= partitions - 2);
    assert_eq!(feed::unpublished_backlog(&mut conn).unwrap().0, 2);
}

#[test]
fn the_default_partition_is_trimmed_in_batches() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let user = register(&db, "alice").0;
    // No partition made since the migration's: everything lands in the default one.
    for hours in [1, 1, 1, 2] {
        record_in(&db, user, hours);
    }
    assert_eq!(in_default(&db), 4);
    publish_everything(&mut conn);
    let before = Utc::now() + HOUR * 3 / 2;
    event_log::drop_partitions(&mut conn, before, TimeDelta::zero(), 2).unwrap();
    assert_eq!(in_default(&db), 2);
    event_log::drop_partitions(&mut conn, before, TimeDelta::zero(), 2).unwrap();
    assert_eq!(
        in_default(&db),
        1,
        "the one not yet past the retention stays"
    );
    assert!(db.query_i64("SELECT dropped_through AS n FROM event_publication") > 0);
}

#[test]
fn deleting_users_deletes_their_history_and_nobody_elses() {
    let db = TestDatabase::new();
    let gone = [register(&db, "gone1"), register(&db, "gone2")];
    let kept = register(&db, "kept");
    for user in [gone[0], gone[1], kept] {
        record_in(&db, user.0, 0);
        record_in(&db, user.0, 30);
    }
    db.execute(&format!(
        "DELETE FROM users WHERE id IN ({}, {})",
        gone[0], gone[1]
    ));
    let events_of = |user: i64| {
        db.query_i64(&format!(
            "SELECT count(*) AS n FROM presence_events WHERE user_id = {user}"
        ))
    };
    assert_eq!((events_of(gone[0].0), events_of(gone[1].0)), (0, 0));
    assert_eq!(events_of(kept.0), 2);
}
