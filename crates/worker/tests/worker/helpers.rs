use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use presence_api::testing::test_redis_url;

/// A `presence-worker` process, killed if the test ends without stopping it.
pub struct WorkerProcess {
    child: Child,
}

/// What the worker needs to know: its database, its Redis prefix, and its timing.
pub struct WorkerEnv<'a> {
    pub database_url: &'a str,
    pub redis_prefix: &'a str,
    pub schedule: &'a str,
    pub offline_after_secs: u32,
}

impl WorkerEnv<'_> {
    pub fn command(&self, subcommand: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_presence-worker"));
        command
            .arg(subcommand)
            .env("DATABASE_URL", self.database_url)
            .env("REDIS_URL", test_redis_url())
            .env("REDIS_PREFIX", self.redis_prefix)
            .env("SWEEP_SCHEDULE", self.schedule)
            .env("OFFLINE_AFTER_SECS", self.offline_after_secs.to_string())
            .env("RUST_LOG", "info");
        command
    }

    pub fn spawn(&self) -> WorkerProcess {
        let child = self
            .command("run")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker binary starts");
        WorkerProcess { child }
    }
}

impl WorkerProcess {
    /// Sends SIGTERM and waits up to `limit` for the exit; returns the status and the log.
    pub fn terminate(mut self, limit: Duration) -> (Option<ExitStatus>, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut log = String::new();
        if status.is_some()
            && let Some(mut stderr) = self.child.stderr.take()
        {
            stderr.read_to_string(&mut log).unwrap();
        }
        (status, log)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}
