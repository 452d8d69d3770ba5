//! The settings both binaries read, each declared once (environment variable or flag).

use presence_model::jobs::DEFAULT_REDIS_PREFIX;

/// Where PostgreSQL is.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseUrl {
    /// PostgreSQL URL. The API's `serve` and `migrate` create the database if it does not
    /// exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = presence_model::db::DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub database_url: String,
}

/// Where Redis is, and the prefix that keeps this deployment's keys apart.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis URL of the job queue and the pub/sub channel.
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
}
