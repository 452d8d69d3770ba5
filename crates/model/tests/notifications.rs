//! What a replica hears of writes: every write of what it holds of a user (account and
//! presence facts) is announced with the user's id, whoever makes it; writes of nothing it
//! holds (the outbox's columns, the sweep's connection flag) are not.

use std::time::{Duration, Instant};

use presence_model::ids::UserId;
use presence_model::manual::{self, StatusUpdate, Update};
use presence_model::notifications::Listener;
use presence_model::testing::{TIMINGS, TestDatabase, register};
use presence_model::vocabulary::Availability;

/// The users announced until `marker` is, in order (the marker left out).
fn heard_until(listener: &mut Listener, marker: UserId) -> Vec<UserId> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut heard = Vec::new();
    loop {
        heard.extend(listener.poll().expect("listening").users);
        if let Some(at) = heard.iter().position(|id| *id == marker) {
            heard.truncate(at);
            return heard;
        }
        assert!(Instant::now() < deadline, "the marker was never heard");
        // A round trip, so the next poll reads what has arrived since.
        listener.database_time().expect("listening");
    }
}

#[test]
fn writes_of_what_replicas_hold_are_announced_and_nothing_else() {
    let db = TestDatabase::new();
    let (ada, marker) = (register(&db, "ada"), register(&db, "marker"));
    let mut listener = Listener::connect(db.url()).unwrap();
    let mark = || {
        db.execute(&format!(
            "UPDATE users SET last_seen = clock_timestamp() WHERE id = {marker}"
        ));
    };
    // Nothing a replica holds: the outbox's columns, `changed_at`, and the connection
    // flag alone (what the sweep writes).
    db.execute(&format!(
        "UPDATE users SET published_presence = 'offline', changed_at = now() WHERE id = {ada}"
    ));
    db.execute(&format!(
        "UPDATE users SET online_status = 'offline' WHERE id = {ada}"
    ));
    mark();
    assert_eq!(heard_until(&mut listener, marker), []);
    // What it holds, through the model and behind its back.
    let mut conn = db.pool().get().unwrap();
    let dnd = StatusUpdate {
        availability: Update::Set((Availability::Dnd, None)),
        ..Default::default()
    };
    manual::set_status(&mut conn, TIMINGS, ada, &dnd).unwrap();
    db.execute(&format!(
        "UPDATE users SET is_admin = true WHERE id = {ada}"
    ));
    mark();
    assert_eq!(heard_until(&mut listener, marker), [ada, ada]);
    // A write that changes nothing is not announced either.
    db.execute(&format!(
        "UPDATE users SET availability = availability WHERE id = {ada}"
    ));
    mark();
    assert_eq!(heard_until(&mut listener, marker), []);
}
