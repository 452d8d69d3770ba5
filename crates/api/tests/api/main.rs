//! The API over real HTTP against a real PostgreSQL, one fresh database per test.

mod errors;
mod helpers;
mod presence;
mod users;
