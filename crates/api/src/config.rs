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
    /// Activity of users already online is written to PostgreSQL in one batch this often
    /// (milliseconds), rather than once per request.
    #[arg(long, env = "LAST_SEEN_FLUSH_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub last_seen_flush_ms: u32,
    /// How often the frontend sends a heartbeat (milliseconds): with the flush interval,
    /// it must fit twice in the offline window, or users could be swept while active.
    #[arg(long, env = "HEARTBEAT_INTERVAL_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub heartbeat_interval_ms: u32,
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

    pub fn last_seen_flush(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.last_seen_flush_ms.into())
    }

    /// Refuses timings under which an active user could be swept offline: a user's stored
    /// `last_seen` lags their latest heartbeat by up to one heartbeat interval plus one
    /// flush interval, and that lag must stay well inside the offline window.
    pub fn validate(&self) -> Result<(), String> {
        let lag = u64::from(self.last_seen_flush_ms) + u64::from(self.heartbeat_interval_ms);
        let half_window = u64::from(self.offline_after_secs) * 1000 / 2;
        if lag > half_window {
            return Err(format!(
                "LAST_SEEN_FLUSH_MS ({}) + HEARTBEAT_INTERVAL_MS ({}) = {lag} ms must be at most \
                 half of OFFLINE_AFTER_SECS ({} s), or users who keep sending heartbeats could \
                 be marked offline: lower the flush interval or raise OFFLINE_AFTER_SECS",
                self.last_seen_flush_ms, self.heartbeat_interval_ms, self.offline_after_secs
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn config(args: &[&str]) -> Config {
        Cli::parse_from(std::iter::once("presence-api").chain(args.iter().copied())).config
    }

    #[test]
    fn defaults_keep_active_users_online() {
        assert_eq!(config(&[]).validate(), Ok(()));
    }

    #[test]
    fn refuses_a_flush_that_could_let_the_sweep_take_active_users() {
        let error = config(&[
            "--offline-after-secs",
            "60",
            "--last-seen-flush-ms",
            "10000",
        ])
        .validate()
        .unwrap_err();
        assert!(
            error.contains("at most half of OFFLINE_AFTER_SECS"),
            "{error}"
        );
        assert_eq!(
            config(&[
                "--offline-after-secs",
                "80",
                "--last-seen-flush-ms",
                "10000"
            ])
            .validate(),
            Ok(())
        );
    }
}
