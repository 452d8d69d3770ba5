//! Settings every process of a deployment must share, stored once in the database.
//!
//! The presence window (`OFFLINE_AFTER_SECS`) decides both what readers are shown (the
//! API) and whom the sweep takes offline (the worker). Two processes with two windows
//! would disagree silently, so the window lives here: the first API to start on a
//! database stores its own, later ones refuse to start with another, `presence-api
//! migrate` changes it deliberately, and the worker reads it for every sweep.

use chrono::TimeDelta;
use diesel::pg::PgConnection;
use diesel::prelude::*;

use crate::Error;
use crate::schema::settings;

const WINDOW: &str = "offline_after_secs";

/// The stored window in seconds, if any process has stored one.
fn stored_window(conn: &mut PgConnection) -> QueryResult<Option<u32>> {
    let value: Option<String> = settings::table
        .find(WINDOW)
        .select(settings::value)
        .first(conn)
        .optional()?;
    Ok(value.and_then(|value| value.parse().ok()))
}

/// Stores `secs` as the window unless one is stored, then checks that it is the one
/// stored: an API replica configured differently from the rest refuses to start.
pub fn agree_on_window(conn: &mut PgConnection, secs: u32) -> Result<(), Error> {
    diesel::insert_into(settings::table)
        .values((
            settings::name.eq(WINDOW),
            settings::value.eq(secs.to_string()),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    match stored_window(conn)? {
        Some(stored) if stored != secs => Err(Error::WindowDisagreement { here: secs, stored }),
        _ => Ok(()),
    }
}

/// Sets the window for every process (`presence-api migrate`): the deliberate way to
/// change it. Running APIs keep the window they started with until restarted.
pub fn store_window(conn: &mut PgConnection, secs: u32) -> QueryResult<()> {
    diesel::insert_into(settings::table)
        .values((
            settings::name.eq(WINDOW),
            settings::value.eq(secs.to_string()),
        ))
        .on_conflict(settings::name)
        .do_update()
        .set(settings::value.eq(secs.to_string()))
        .execute(conn)
        .map(drop)
}

/// The window the sweep uses: the stored one; [`Error::WindowUnknown`] until an API has
/// started on this database.
pub fn window(conn: &mut PgConnection) -> Result<TimeDelta, Error> {
    stored_window(conn)?
        .map(|secs| TimeDelta::seconds(secs.into()))
        .ok_or(Error::WindowUnknown)
}
