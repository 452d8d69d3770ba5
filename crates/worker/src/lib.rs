#![doc = include_str!("../README.md")]

pub mod config;
pub mod jobs;
pub mod queue;
pub mod startup;
