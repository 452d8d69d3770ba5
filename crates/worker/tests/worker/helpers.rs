use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use presence_api::testing::test_redis_url;

/// A `presence-worker` process, killed if the test ends without stopping it. Its log
/// (stderr) is collected as it is written.
pub struct WorkerProcess {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
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
            .env("WORKER_HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info");
        command
    }

    pub fn spawn(&self) -> WorkerProcess {
        let mut child = self
            .command("run")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker binary starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        WorkerProcess {
            child,
            log,
            reader: Some(reader),
        }
    }
}

impl WorkerProcess {
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The port of the worker's HTTP server, once it has logged it.
    pub fn http_port(&self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if let Some(port) = log.lines().find_map(|line| {
                let (_, rest) = line.split_once("http listening on ")?;
                rest.split("(port ")
                    .nth(1)?
                    .trim_end_matches(')')
                    .parse()
                    .ok()
            }) {
                return port;
            }
            assert!(Instant::now() < deadline, "no HTTP port logged:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

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
        if status.is_some()
            && let Some(reader) = self.reader.take()
        {
            let _ = reader.join();
        }
        (status, self.log())
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
