//! Settings, read from environment variables (a `.env` file is loaded first if present)
//! or the matching command-line flags. Every one has a default that works against the
//! local PostgreSQL; `.env.example` lists them.

use chrono::TimeDelta;
use presence_model::jobs::DEFAULT_REDIS_PREFIX;

#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL. `serve` and `migrate` create the database if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = presence_model::db::DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub database_url: String,
    /// Connections in the pool of each API process.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub database_pool_size: u32,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Redis URL of the job queue the worker reads.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Prefix of every Redis key and channel this service uses.
    #[arg(long, env = "REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX)]
    pub redis_prefix: String,
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8000")]
    pub listen_addr: String,
    /// Seconds without activity after which a user is shown offline.
    #[arg(long, env = "OFFLINE_AFTER_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub offline_after_secs: u32,
    /// Seconds a session may go unused before its token stops working (default 30 days).
    #[arg(long, env = "SESSION_TTL_SECS", default_value_t = 2_592_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub session_ttl_secs: u32,
}

impl Config {
    pub fn offline_after(&self) -> TimeDelta {
        TimeDelta::seconds(self.offline_after_secs.into())
    }

    pub fn session_ttl(&self) -> TimeDelta {
        TimeDelta::seconds(self.session_ttl_secs.into())
    }
}
