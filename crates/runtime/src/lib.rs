#![doc = include_str!("../README.md")]

pub mod addresses;
pub mod blocking;
pub mod config;
pub mod listeners;
pub mod logging;
pub mod metrics;
pub mod nudges;
pub mod readiness;
pub mod redis_conn;
pub mod replicas;
pub mod signals;
pub mod stream_counts;
pub mod workers;
