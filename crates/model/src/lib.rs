#![doc = include_str!("../README.md")]

pub mod clock;
pub mod db;
pub mod error;
pub mod events;
pub mod jobs;
pub mod policy;
pub mod presence;
pub mod schema;
pub mod sessions;
pub mod settings;
pub mod status;
pub mod sweeps;
mod text_enum;
pub mod users;

pub use db::{DbPool, PooledConn};
pub use error::Error;
pub use presence::OnlineStatus;
#[cfg(feature = "testing")]
pub mod testing;
