//! The API over real HTTP against a real PostgreSQL, one fresh database per test.

mod cache;
mod coalescing;
mod errors;
mod faults;
mod frontend;
mod operations;
mod presence;
mod process;
mod queue;
mod races;
mod states;
mod stream_lifetimes;
mod streams;
mod throttle;
mod users;
