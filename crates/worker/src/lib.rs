#![doc = include_str!("../README.md")]

pub mod config;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod queue;
pub mod startup;
