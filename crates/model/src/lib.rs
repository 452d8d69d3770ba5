#![doc = include_str!("../README.md")]

// In layers, each importing only from the ones below it: the order is `LAYERS` in
// `tests/layering.rs`, which checks it (vocabulary and values, infrastructure, reads, the
// outbox, transitions, accounts).
pub mod clock;
pub mod counts;
pub mod db;
pub mod directory;
pub mod error;
pub mod event_log;
pub mod events;
pub mod facts;
pub mod feed;
pub mod flushes;
pub mod ids;
pub mod jobs;
pub mod manual;
pub mod notifications;
pub mod policy;
pub mod presence;
pub mod purges;
pub mod samples;
pub mod schema;
pub mod sessions;
pub mod settings;
pub mod shown;
mod sql;
pub mod status_ends;
pub mod sweeps;
#[cfg(feature = "testing")]
pub mod testing;
mod text_enum;
pub mod tokens;
pub mod users;
pub mod views;
pub mod vocabulary;

pub use db::{DbPool, PooledConn};
pub use error::Error;
pub use vocabulary::OnlineStatus;
