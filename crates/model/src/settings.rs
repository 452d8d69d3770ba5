//! Settings every process of a deployment must share, stored once in the database.
//!
//! The presence window (`OFFLINE_AFTER_SECS`) and the away timeout (`AWAY_AFTER_SECS`)
//! decide both what readers are shown (the API) and whom the sweep moves (the worker).
//! Two processes with two values would disagree silently, so they live here: the first
//! API to start on a database stores its own, later ones refuse to start with others,
//! `presence-api migrate` changes them deliberately (running APIs adopt the change within
//! a second), and the worker reads them for every sweep.

use chrono::TimeDelta;
use diesel::pg::PgConnection;
use diesel::prelude::*;

use crate::Error;
use crate::schema::settings;

/// The shared timings, in seconds, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// `OFFLINE_AFTER_SECS`: silence after which a user is offline.
    pub offline_after_secs: u32,
    /// `AWAY_AFTER_SECS`: time without real use after which a connected user is away.
    pub away_after_secs: u32,
}

impl Timings {
    pub fn window(&self) -> TimeDelta {
        TimeDelta::seconds(self.offline_after_secs.into())
    }

    pub fn away_after(&self) -> TimeDelta {
        TimeDelta::seconds(self.away_after_secs.into())
    }

    /// How far a session row's `last_seen` and `active_at` may lag before a flush
    /// rewrites them: half the shorter of the window and the away timeout. They serve the
    /// session TTL, "is another session connected?" and the sweep's fall-back of
    /// `active_at`, which need no finer grain.
    pub fn session_granularity(&self) -> TimeDelta {
        self.window().min(self.away_after()) / 2
    }

    /// (row name, environment variable, value) of each setting.
    fn rows(&self) -> [(&'static str, &'static str, u32); 2] {
        [
            (
                "offline_after_secs",
                "OFFLINE_AFTER_SECS",
                self.offline_after_secs,
            ),
            ("away_after_secs", "AWAY_AFTER_SECS", self.away_after_secs),
        ]
    }
}

fn stored(conn: &mut PgConnection, name: &str) -> QueryResult<Option<u32>> {
    let value: Option<String> = settings::table
        .find(name)
        .select(settings::value)
        .first(conn)
        .optional()?;
    Ok(value.and_then(|value| value.parse().ok()))
}

/// Stores each timing unless one is stored, then checks that it is the one stored: an API
/// replica configured differently from the rest refuses to start.
pub fn agree_on_timings(conn: &mut PgConnection, timings: Timings) -> Result<(), Error> {
    for (name, setting, here) in timings.rows() {
        diesel::insert_into(settings::table)
            .values((
                settings::name.eq(name),
                settings::value.eq(here.to_string()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)?;
        match stored(conn, name)? {
            Some(stored) if stored != here => {
                return Err(Error::SettingDisagreement {
                    setting,
                    here,
                    stored,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Records that an API replica accepts sessions unused for up to `ttl_secs`: the stored
/// value is the longest any replica has accepted, so the worker never purges a session
/// some replica would still accept (see [`crate::purges`]).
pub fn record_session_ttl(conn: &mut PgConnection, ttl_secs: u32) -> QueryResult<()> {
    const NAME: &str = "session_ttl_secs";
    conn.transaction(|conn| {
        diesel::insert_into(settings::table)
            .values((
                settings::name.eq(NAME),
                settings::value.eq(ttl_secs.to_string()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)?;
        let longest: String = settings::table
            .find(NAME)
            .select(settings::value)
            .for_update()
            .first(conn)?;
        if longest
            .parse::<u32>()
            .is_ok_and(|longest| longest >= ttl_secs)
        {
            return Ok(());
        }
        diesel::update(settings::table.find(NAME))
            .set(settings::value.eq(ttl_secs.to_string()))
            .execute(conn)
            .map(drop)
    })
}

/// The longest session TTL an API replica has recorded, if any has.
pub fn longest_session_ttl(conn: &mut PgConnection) -> QueryResult<Option<u32>> {
    stored(conn, "session_ttl_secs")
}

/// Sets the timings for every process (`presence-api migrate`): the deliberate way to
/// change them. Running APIs adopt them within a second; the worker at its next sweep.
pub fn store_timings(conn: &mut PgConnection, timings: Timings) -> QueryResult<()> {
    for (name, _, value) in timings.rows() {
        diesel::insert_into(settings::table)
            .values((
                settings::name.eq(name),
                settings::value.eq(value.to_string()),
            ))
            .on_conflict(settings::name)
            .do_update()
            .set(settings::value.eq(value.to_string()))
            .execute(conn)?;
    }
    Ok(())
}

/// The timings the sweep uses: the stored ones; [`Error::TimingsUnknown`] until an API
/// has started on this database.
pub fn timings(conn: &mut PgConnection) -> Result<Timings, Error> {
    let window = stored(conn, "offline_after_secs")?;
    let away = stored(conn, "away_after_secs")?;
    match (window, away) {
        (Some(offline_after_secs), Some(away_after_secs)) => Ok(Timings {
            offline_after_secs,
            away_after_secs,
        }),
        _ => Err(Error::TimingsUnknown),
    }
}
