//! The shared timings, followed while the process runs.
//!
//! `presence-api migrate` may change the window and the away timeout stored in the
//! database while replicas serve. Each replica reads them every [`TIMINGS_POLL`] and
//! adopts a change at once, as the worker does for every sweep, so the fleet runs on one
//! set of timings again within about a second, never on two for long. A change this
//! process's own intervals make unsafe (`migrate` refuses those, given the fleet's
//! settings) is not adopted: it is logged, and the process keeps the timings it has.

use std::time::Duration;

use actix_web::web;
use presence_model::settings;

use crate::config::policy_for;
use crate::state::{AppState, db};

/// How often a replica reads the stored timings.
pub const TIMINGS_POLL: Duration = Duration::from_secs(1);

/// Adopts the stored timings whenever they change, until the process stops. `flush_ms`
/// and `heartbeat_ms` are this process's own intervals, checked against every change.
pub async fn follow_timings(state: web::Data<AppState>, flush_ms: u32, heartbeat_ms: u32) {
    let mut ticker = tokio::time::interval(TIMINGS_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let stored = match db(&state, settings::timings).await {
            Ok(stored) => stored,
            Err(e) => {
                log::debug!("could not read the stored timings: {e}");
                continue;
            }
        };
        if stored == state.policy().timings() {
            continue;
        }
        match policy_for(stored, flush_ms, heartbeat_ms) {
            Ok(policy) => {
                log::info!(
                    "adopted the stored timings: offline after {} s, away after {} s",
                    stored.offline_after_secs,
                    stored.away_after_secs
                );
                *state.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
            }
            Err(why) => log::error!("not adopting the stored timings: {why}"),
        }
    }
}
