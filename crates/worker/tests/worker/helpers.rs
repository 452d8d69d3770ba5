use std::process::Command;
use std::time::Duration;

use presence_api::testing::TestApp;
use presence_model::jobs::presence_changes_channel;
use presence_model::settings::Timings;
use presence_testkit::{Process, test_redis_url};

/// What the worker needs to know: its database, its Redis prefix, and its timings (stored
/// in the database, as the API stores them).
pub struct WorkerEnv<'a> {
    pub database_url: &'a str,
    pub redis_prefix: &'a str,
    pub schedule: &'a str,
    pub timings: Timings,
}

/// The timings with this window and the default away timeout.
pub fn timings(offline_after_secs: u32) -> Timings {
    Timings {
        offline_after_secs,
        away_after_secs: 300,
    }
}

impl WorkerEnv<'_> {
    pub fn command(&self, subcommand: &str) -> Command {
        let pool = presence_model::db::build_pool(self.database_url, 1, Duration::from_secs(2));
        if let Ok(mut conn) = pool.get() {
            presence_model::settings::store_timings(&mut conn, self.timings)
                .expect("store the timings");
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_presence-worker"));
        command
            .arg(subcommand)
            .env("DATABASE_URL", self.database_url)
            .env("REDIS_URL", test_redis_url())
            .env("REDIS_PREFIX", self.redis_prefix)
            .env("SWEEP_SCHEDULE", self.schedule)
            .env("WORKER_HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info");
        command
    }

    /// `presence-worker run`, its HTTP server on a free port.
    pub fn spawn(&self) -> Process {
        Process::spawn(self.command("run"))
    }
}

/// [`presence_testkit::eventually`] for a check that needs no `.await`.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    presence_testkit::eventually(limit, || std::future::ready(check())).await
}

/// A sweep schedule that never fires during a test: for tests about the job queue.
pub const NEVER: &str = "0 0 0 1 1 * 2099";

/// A worker on `app`'s database and Redis prefix whose sweep never fires.
pub fn queue_worker(app: &TestApp) -> Process {
    WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: NEVER,
        timings: app.config.timings(),
    }
    .spawn()
}

/// A subscriber to the transitions published for `app`.
pub async fn published_changes(
    app: &TestApp,
) -> impl futures_util::Stream<Item = redis::Msg> + Unpin + use<> {
    let client = redis::Client::open(app.config.redis.redis_url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(presence_changes_channel(&app.config.redis.redis_prefix))
        .await
        .unwrap();
    pubsub.into_on_message()
}
