//! The worker binary against real PostgreSQL and Redis, alone and behind the real API.

mod deployment;
mod faults;
mod helpers;
mod operations;
mod pipeline;
mod statuses;
mod streams;
mod sweep;
