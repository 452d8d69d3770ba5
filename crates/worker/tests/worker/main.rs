//! The worker binary against real PostgreSQL and Redis, alone and behind the real API.

mod helpers;
mod pipeline;
mod sweep;
