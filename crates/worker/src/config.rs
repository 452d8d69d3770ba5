//! Settings from environment variables (a `.env` file is loaded first if present) or
//! flags; `.env.example` lists them with their defaults.

use std::str::FromStr;

use presence_runtime::config::{DatabaseUrl, RedisConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub url: DatabaseUrl,
    /// Connections in the worker's pool.
    #[arg(long, env = "WORKER_DATABASE_POOL_SIZE", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub database_pool_size: u32,
    #[command(flatten)]
    pub redis: RedisConfig,
    /// When the sweep runs: a cron expression with seconds first (6 or 7 fields).
    #[arg(long, env = "SWEEP_SCHEDULE", default_value = "0 * * * * *", value_parser = parse_schedule)]
    pub sweep_schedule: cron::Schedule,
    /// Where the worker serves /healthz, /readyz and /metrics. Unset: 127.0.0.1:9100, or
    /// a free port on 127.0.0.1 if another replica on this host has it (the log says
    /// which). Set: exactly there, or the worker refuses to start.
    #[arg(long, env = "WORKER_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// How often (milliseconds) each worker publishes whatever the outbox still holds,
    /// besides the publish jobs queued after each change: what bounds the delay of a
    /// transition whose job was lost.
    #[arg(long, env = "PUBLISH_CATCH_UP_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(10..))]
    pub publish_catch_up_ms: u32,
    /// How often (milliseconds) each worker purges sessions nobody can use any more and
    /// old sweep runs, in batches.
    #[arg(long, env = "PURGE_EVERY_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u32).range(10..))]
    pub purge_every_ms: u32,
    /// How long (seconds) revoked sessions and sweep runs are kept before they are
    /// purged; expired sessions are kept this long past the longest session TTL.
    #[arg(long, env = "PURGE_AFTER_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub purge_after_secs: u32,
    /// How long (seconds) one partition of the event log (`presence_events`) spans.
    #[arg(long, env = "EVENTS_PARTITION_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub events_partition_secs: u32,
    /// How long (seconds) transitions are kept: a user's history and a stream's resume
    /// reach no further back. Whole partitions go once they ended this long ago.
    #[arg(long, env = "EVENTS_RETENTION_SECS", default_value_t = 604_800,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub events_retention_secs: u32,
}

impl Config {
    pub fn publish_catch_up(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.publish_catch_up_ms.into())
    }

    pub fn purge_every(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.purge_every_ms.into())
    }

    pub fn purge_after(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(self.purge_after_secs.into())
    }

    /// How the event log is cut and kept; its maintenance runs with the purges.
    pub fn event_log(&self) -> EventLogRetention {
        EventLogRetention {
            partition: chrono::TimeDelta::seconds(self.events_partition_secs.into()),
            keep: chrono::TimeDelta::seconds(self.events_retention_secs.into()),
            // A resume reading the log in a transaction older than this could miss a
            // dropped partition; resumes last milliseconds, purges come a minute apart.
            grace: chrono::TimeDelta::milliseconds(self.purge_every_ms.into()),
        }
    }
}

/// The event log's partition width, its retention, and the grace between finding a
/// partition past the retention and dropping it (`presence_model::event_log`).
#[derive(Debug, Clone, Copy)]
pub struct EventLogRetention {
    pub partition: chrono::TimeDelta,
    pub keep: chrono::TimeDelta,
    pub grace: chrono::TimeDelta,
}

fn parse_schedule(expression: &str) -> Result<cron::Schedule, String> {
    cron::Schedule::from_str(expression).map_err(|e| {
        format!("{e} (use 6 or 7 fields, seconds first: \"0 * * * * *\" is every minute)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_take_seconds_first() {
        assert!(parse_schedule("0 * * * * *").is_ok());
        assert!(parse_schedule("*/1 * * * * *").is_ok());
        let five_fields = parse_schedule("* * * * *").unwrap_err();
        assert!(five_fields.contains("seconds first"), "{five_fields}");
        assert!(parse_schedule("every minute").is_err());
    }
}
