#![doc = include_str!("../README.md")]

use presence_model::testing::TestDatabase;
use redis::Commands;

/// The Redis tests use: `TEST_REDIS_URL`, else the local one.
pub fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Deletes every Redis key under `prefix`, and its queue from apalis's global queue list.
pub fn remove_redis_keys(redis_url: &str, prefix: &str) {
    let Ok(mut conn) = redis::Client::open(redis_url).and_then(|client| client.get_connection())
    else {
        return;
    };
    let keys: Vec<String> = conn
        .scan_match::<_, String>(format!("{prefix}:*"))
        .map(|keys| keys.filter_map(Result::ok).collect())
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = conn.del(&keys);
    }
    let queue = presence_model::jobs::expiry_queue(prefix);
    let _: redis::RedisResult<()> =
        conn.zrem("core:apalis:queues:list", format!("{queue}:workers"));
}

/// A child process of one of our binaries, killed if the test ends without stopping it.
/// Its log (stderr) is collected as it is written.
pub struct Process {
    child: std::process::Child,
    /// Where the process writes its addresses (`presence_runtime::addresses`).
    address_file: std::path::PathBuf,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    pub fn spawn(mut command: std::process::Command) -> Self {
        use std::io::BufRead;
        static SPAWNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let address_file = std::env::temp_dir().join(format!(
            "presence-addresses-{}-{}.json",
            std::process::id(),
            SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&address_file);
        let mut child = command
            .env(presence_runtime::addresses::ADDRESS_FILE_VAR, &address_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self {
            child,
            address_file,
            log,
            reader: Some(reader),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The port of the process's API (or, for a worker, its health and metrics server).
    pub fn port(&self) -> u16 {
        self.announced_port("http")
    }

    /// The port of an API process's metrics.
    pub fn metrics_port(&self) -> u16 {
        self.announced_port("metrics")
    }

    /// The port the process wrote to its address file as `name`, once it has.
    fn announced_port(&self, name: &str) -> u16 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(addr) = presence_runtime::addresses::read(&self.address_file, name) {
                return addr.port();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {name} address announced:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits up to `limit` for the exit; the status (`None` if it did not
    /// exit in time) and the log.
    pub fn terminate(
        self,
        limit: std::time::Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        self.sigterm();
        self.wait(limit)
    }

    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid}");
    }

    /// Waits up to `limit` for the exit: the status (`None` if it did not exit in time)
    /// and the log.
    pub fn wait(
        mut self,
        limit: std::time::Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        if status.is_some()
            && let Some(reader) = self.reader.take()
        {
            let _ = reader.join();
        }
        (status, self.log())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.address_file);
    }
}

/// Removes the Redis keys of the test using a database when dropped, even if the test
/// panics (as `TestDatabase` drops its database).
pub struct RedisKeys(String);

impl RedisKeys {
    pub fn of(db: &TestDatabase) -> Self {
        Self(test_prefix(db).to_owned())
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        remove_redis_keys(&test_redis_url(), &self.0);
    }
}

/// The Redis prefix of the test using `db`.
pub fn test_prefix(db: &TestDatabase) -> &str {
    db.name()
}

/// A raw HTTP/1.1 request over a fresh connection; returns the status and the body.
pub fn raw_http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `check` every 20 ms until it holds or `limit` passes, blocking the thread;
/// returns whether it held. For tests that drive processes rather than a `TestApp`.
pub fn wait_until(limit: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    limit: std::time::Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The value of `name` (with its labels, as printed) in a Prometheus text exposition; 0
/// when absent.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A PostgreSQL server of the test's own (`initdb` into a temporary directory, run as the
/// `postgres` user on a free port), for tests that stop and start it. Only this server is
/// ever stopped; it is stopped and removed when dropped.
pub struct OwnPostgres {
    pub port: u16,
    data: std::path::PathBuf,
    bin: std::path::PathBuf,
}

impl OwnPostgres {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql")
            .filter_map(Result::ok)
            .map(|version| version.path().join("bin"))
            .find(|bin| bin.join("initdb").exists())
            .expect("initdb");
        let port = free_port();
        let data = std::env::temp_dir().join(format!("presence-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&data).expect("data directory");
        Self::as_postgres("chown", &["postgres", &data.to_string_lossy()]);
        let server = Self { port, data, bin };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        server.start_again();
        server
    }

    fn data(&self) -> String {
        self.data.to_string_lossy().into_owned()
    }

    fn as_postgres(program: &str, args: &[&str]) {
        let status = if program == "chown" {
            std::process::Command::new("chown").args(args).status()
        } else {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--", program])
                .args(args)
                .stdout(std::process::Stdio::null())
                .status()
        }
        .expect("the command runs");
        assert!(status.success(), "{program} {args:?}");
    }

    fn run(&self, tool: &str, args: &[&str]) {
        Self::as_postgres(&self.bin.join(tool).to_string_lossy(), args);
    }

    /// The server URL for `TestDatabase::on_server`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Fast shutdown: open connections are cut, as in a crash or a restart.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k /tmp -c fsync=off -c listen_addresses=127.0.0.1",
            self.port
        );
        let log = format!("{}/server.log", self.data());
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// A Redis server of the test's own on a free port, keeping nothing on disk, for tests
/// that kill it. Only this server is ever killed (by its pid).
pub struct OwnRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// On `port`: for a client that was told the address before the server ran.
    pub fn start_on(port: u16) -> Self {
        let mut redis = Self { port, child: None };
        redis.start_again();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn start_again(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the server holds every connection open and answers nothing, as a hung
    /// server does, until [`OwnRedis::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`OwnRedis::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("redis-server runs")
            .id()
            .to_string();
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
