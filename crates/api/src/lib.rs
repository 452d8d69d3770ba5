#![doc = include_str!("../README.md")]

pub mod activity;
pub mod auth;
pub mod config;
pub mod errors;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod session_cache;
pub mod startup;
pub mod state;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;
pub mod throttle;
pub mod tickets;
