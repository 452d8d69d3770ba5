//! Settings, read from environment variables (a `.env` file is loaded first if present)
//! or the matching command-line flags. Every one has a default that works against the
//! local PostgreSQL; `.env.example` lists them.

use chrono::TimeDelta;
use presence_model::policy::PresencePolicy;
use presence_model::settings::Timings;
use presence_runtime::config::{DatabaseUrl, RedisConfig};

pub const DEFAULT_OFFLINE_AFTER_SECS: u32 = 120;
pub const DEFAULT_AWAY_AFTER_SECS: u32 = 300;

#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseConfig {
    #[command(flatten)]
    pub url: DatabaseUrl,
    /// Connections in the pool of each API process.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub database_pool_size: u32,
    /// How long (milliseconds) a request waits for a database connection before it is
    /// answered 503: what a client waits, at most, while PostgreSQL is down.
    #[arg(long, env = "DATABASE_POOL_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub database_pool_timeout_ms: u32,
}

impl DatabaseConfig {
    pub fn pool(&self, size: u32) -> presence_model::DbPool {
        presence_model::db::build_pool(
            &self.url.database_url,
            size,
            std::time::Duration::from_millis(self.database_pool_timeout_ms.into()),
        )
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8000")]
    pub listen_addr: String,
    /// Address `GET /metrics` (Prometheus) is served on, apart from the API: keep it on a
    /// private network.
    #[arg(long, env = "METRICS_LISTEN_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_listen_addr: String,
    /// Seconds without activity after which a user is shown offline.
    #[arg(long, env = "OFFLINE_AFTER_SECS", default_value_t = DEFAULT_OFFLINE_AFTER_SECS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub offline_after_secs: u32,
    /// Seconds without real use of the app (a heartbeat with `{"active": false}` is not)
    /// after which a connected user is shown away.
    #[arg(long, env = "AWAY_AFTER_SECS", default_value_t = DEFAULT_AWAY_AFTER_SECS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub away_after_secs: u32,
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
    /// Users this replica holds in memory to answer `/me` and status lookups (about 400
    /// bytes each); past it the least used are read from PostgreSQL again.
    #[arg(long, env = "PRESENCE_CACHE_USERS", default_value_t = 100_000)]
    pub presence_cache_users: u64,
    /// Seconds a session may go unused before its token stops working (default 30 days).
    #[arg(long, env = "SESSION_TTL_SECS", default_value_t = 2_592_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub session_ttl_secs: u32,
    /// How long (milliseconds) a client may take to send a request body; then it gets 408
    /// and the connection is closed.
    #[arg(long, env = "CLIENT_BODY_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub client_body_timeout_ms: u32,
    /// Failed logins allowed per account within LOGIN_FAILURE_WINDOW_SECS, across all
    /// replicas; then 429 until the window ends.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_ACCOUNT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_max_failures_per_account: u32,
    /// Failed logins allowed per client address within the window, across all replicas.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_ADDRESS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_max_failures_per_address: u32,
    /// The window (seconds) failed logins are counted over.
    #[arg(long, env = "LOGIN_FAILURE_WINDOW_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_failure_window_secs: u32,
    /// Registrations allowed per client address per hour, across all replicas; then 429.
    #[arg(long, env = "REGISTRATIONS_PER_ADDRESS_PER_HOUR", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub registrations_per_address_per_hour: u32,
    /// Registrations allowed per minute for the whole deployment; then 429.
    #[arg(long, env = "REGISTRATIONS_PER_MINUTE", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub registrations_per_minute: u32,
    /// Login attempts (right or wrong) allowed per client address per minute, across all
    /// replicas; then 429.
    #[arg(long, env = "LOGINS_PER_ADDRESS_PER_MINUTE", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub logins_per_address_per_minute: u32,
    /// Login attempts allowed per minute for the whole deployment; then 429.
    #[arg(long, env = "LOGINS_PER_MINUTE", default_value_t = 6000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub logins_per_minute: u32,
    /// Password hashes (login, register) computed at once per process; 0 means half the
    /// cores, at least one. Each takes ~50 ms of a core and ~19 MiB.
    #[arg(long, env = "PASSWORD_HASHES_IN_FLIGHT", default_value_t = 0)]
    pub password_hashes_in_flight: u32,
    #[command(flatten)]
    pub streams: StreamConfig,
}

/// The live presence streams (`GET /api/presence/stream/`).
#[derive(Debug, Clone, clap::Args)]
pub struct StreamConfig {
    /// A stream sends at most one batch of changes this often (milliseconds); a change
    /// after a quiet interval goes out at once.
    #[arg(long, env = "STREAM_BATCH_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub stream_batch_ms: u32,
    /// A comment is sent on an idle stream this often (milliseconds), so proxies keep it
    /// open and a client that went away is found (writing to its closed connection fails)
    /// and its place freed.
    #[arg(long, env = "STREAM_KEEPALIVE_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub stream_keepalive_ms: u32,
    /// A stream whose client has taken nothing for this long (milliseconds) while changes
    /// wait drops them, and gets `resync` and a snapshot when it reads again.
    #[arg(long, env = "STREAM_STALL_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub stream_stall_ms: u32,
    /// How far back (seconds) a reconnect with `Last-Event-ID` is given the changes it
    /// missed; older, it gets a snapshot.
    #[arg(long, env = "STREAM_RESUME_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub stream_resume_secs: u32,
    /// The most recent published changes each replica keeps in memory (about 150 bytes
    /// each, plus custom status text) so that a reconnect after one of them resumes
    /// without PostgreSQL; one older is read from the outbox.
    #[arg(long, env = "STREAM_RESUME_WINDOW", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub stream_resume_window: u32,
    /// Open streams per user, on each process; then the oldest stream of the same session
    /// is ended to make room (a reconnect, a page replacing its stream), and a stream of
    /// another session gets 429.
    #[arg(long, env = "STREAMS_PER_USER", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub streams_per_user: u32,
    /// Open streams per process; then 503 (unless the same session's oldest stream can make
    /// room, as above). Never more than the open-file limit allows
    /// (less 512 kept for everything else).
    #[arg(long, env = "STREAMS_PER_PROCESS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub streams_per_process: u32,
    /// Live stream tickets per user, across replicas; minting one more invalidates the
    /// oldest.
    #[arg(long, env = "TICKETS_PER_USER", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub tickets_per_user: u32,
    /// How long (milliseconds) data sent on a connection may stay unacknowledged before
    /// the connection is dropped (`TCP_USER_TIMEOUT`, with TCP keep-alive probes on idle
    /// connections): a client that vanished without closing (a dropped network) frees its
    /// stream within this much of the next keep-alive, not after the kernel's ~15 minutes.
    #[arg(long, env = "TCP_USER_TIMEOUT_MS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub tcp_user_timeout_ms: u32,
    /// Origins (comma-separated, e.g. `https://chat.example.com`) whose pages may call the
    /// API and open streams (CORS); empty: none.
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        default_value = "",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Vec<String>,
}

impl StreamConfig {
    pub fn settings(&self) -> crate::stream::StreamSettings {
        let ms = |ms: u32| std::time::Duration::from_millis(ms.into());
        crate::stream::StreamSettings {
            batch: ms(self.stream_batch_ms),
            keepalive: ms(self.stream_keepalive_ms),
            stall: ms(self.stream_stall_ms),
            resume_reach: TimeDelta::seconds(self.stream_resume_secs.into()),
            resume_window: self.stream_resume_window as usize,
            per_user: self.streams_per_user as usize,
            per_process: self.streams_per_process as usize,
        }
    }

    /// The allowed origins, without empty entries.
    pub fn origins(&self) -> Vec<String> {
        self.cors_allowed_origins
            .iter()
            .map(|origin| origin.trim().to_owned())
            .filter(|origin| !origin.is_empty())
            .collect()
    }
}

impl Config {
    /// The timings every process of the deployment must share.
    pub fn timings(&self) -> Timings {
        Timings {
            offline_after_secs: self.offline_after_secs,
            away_after_secs: self.away_after_secs,
        }
    }

    pub fn session_ttl(&self) -> TimeDelta {
        TimeDelta::seconds(self.session_ttl_secs.into())
    }

    pub fn client_body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.client_body_timeout_ms.into())
    }

    pub fn login_limits(&self) -> crate::throttle::LoginLimits {
        crate::throttle::LoginLimits {
            per_account: self.login_max_failures_per_account,
            per_address: self.login_max_failures_per_address,
            window: std::time::Duration::from_secs(self.login_failure_window_secs.into()),
        }
    }

    pub fn admission_quotas(&self) -> crate::admission::AdmissionQuotas {
        use crate::admission::Quota;
        let per = |limit: u32, secs: u64| Quota {
            limit,
            window: std::time::Duration::from_secs(secs),
        };
        crate::admission::AdmissionQuotas {
            registrations_per_address: per(self.registrations_per_address_per_hour, 3600),
            registrations: per(self.registrations_per_minute, 60),
            logins_per_address: per(self.logins_per_address_per_minute, 60),
            logins: per(self.logins_per_minute, 60),
        }
    }

    pub fn password_hashes_in_flight(&self) -> usize {
        match self.password_hashes_in_flight {
            0 => std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1)),
            n => n as usize,
        }
    }

    /// The presence policy these settings make, or why they are refused (naming the
    /// settings to change).
    pub fn policy(&self) -> Result<PresencePolicy, String> {
        policy_for(
            self.timings(),
            self.last_seen_flush_ms,
            self.heartbeat_interval_ms,
        )
    }
}

/// The presence policy of `timings` for a process flushing every `flush_ms` whose clients
/// beat every `heartbeat_ms`, or why it is refused, naming the settings to change: for
/// `serve`, and for `migrate` before it stores new timings.
pub fn policy_for(
    timings: Timings,
    flush_ms: u32,
    heartbeat_ms: u32,
) -> Result<PresencePolicy, String> {
    PresencePolicy::new(
        timings,
        TimeDelta::milliseconds(flush_ms.into()),
        TimeDelta::milliseconds(heartbeat_ms.into()),
    )
    // The rule and its message are the model's; this names the settings behind them.
    .map_err(|unsafe_timings| {
        format!(
            "{unsafe_timings}: lower LAST_SEEN_FLUSH_MS or HEARTBEAT_INTERVAL_MS, or raise \
             OFFLINE_AFTER_SECS or AWAY_AFTER_SECS"
        )
    })
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
        assert_eq!(config(&[]).policy().map(drop), Ok(()));
    }

    #[test]
    fn refuses_a_flush_that_could_let_the_sweep_take_active_users() {
        let error = config(&[
            "--offline-after-secs",
            "60",
            "--last-seen-flush-ms",
            "10000",
        ])
        .policy()
        .map(drop)
        .unwrap_err();
        assert!(
            error.contains("at most half of the presence window (60 s)")
                && error.contains("LAST_SEEN_FLUSH_MS"),
            "{error}"
        );
        assert_eq!(
            config(&[
                "--offline-after-secs",
                "80",
                "--last-seen-flush-ms",
                "10000"
            ])
            .policy()
            .map(drop),
            Ok(())
        );
    }
}
