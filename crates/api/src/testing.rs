//! Test support (feature `testing`): [`TestApp`] runs the real application on a random
//! port over a fresh database and its own Redis prefix, with request helpers.

use crate::config::{Config, DatabaseConfig};
use crate::startup::Application;
use actix_web::http::StatusCode;
use presence_model::testing::TestDatabase;
use presence_model::users;
use redis::Commands;
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery";
/// The Redis tests use: `TEST_REDIS_URL`, else the local one.
pub fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The real application on a random port, over its own fresh database (shared with the
/// replicas made by [`TestApp::replica`]).
pub struct TestApp {
    pub address: String,
    /// Where its `GET /metrics` is served.
    pub metrics_port: u16,
    pub db: std::sync::Arc<TestDatabase>,
    pub config: Config,
    state: actix_web::web::Data<crate::state::AppState>,
    client: awc::Client,
}

impl Drop for TestApp {
    /// Removes this test's Redis keys, as `TestDatabase` drops its database.
    fn drop(&mut self) {
        remove_redis_keys(
            &self.config.redis.redis_url,
            &self.config.redis.redis_prefix,
        );
    }
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

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_on(TestDatabase::new(), adjust).await
    }

    /// The app over `db` (on a server of the test's own, say).
    pub async fn spawn_on(db: TestDatabase, adjust: impl FnOnce(&mut Config)) -> Self {
        // Captured by the test harness: shown for failing tests only.
        let _ = env_logger::builder().is_test(true).try_init();
        let mut config = Config {
            database: DatabaseConfig {
                url: presence_runtime::config::DatabaseUrl {
                    database_url: db.url().to_owned(),
                },
                database_pool_size: 8,
                database_pool_timeout_ms: 1000,
            },
            redis: presence_runtime::config::RedisConfig {
                redis_url: test_redis_url(),
                // Its own keys and channel: tests share one Redis and run in parallel.
                redis_prefix: test_prefix(&db).to_owned(),
            },
            listen_addr: "127.0.0.1:0".to_owned(),
            metrics_listen_addr: "127.0.0.1:0".to_owned(),
            offline_after_secs: 120,
            away_after_secs: 300,
            // Short, so tests see deferred activity written soon (and may flush at will).
            last_seen_flush_ms: 100,
            heartbeat_interval_ms: 100,
            session_ttl_secs: 3600,
            client_body_timeout_ms: 10_000,
            login_max_failures_per_account: 10,
            login_max_failures_per_address: 100,
            login_failure_window_secs: 900,
            // Tests sign many users up from one address.
            registrations_per_address_per_hour: 100_000,
            registrations_per_minute: 100_000,
            logins_per_address_per_minute: 100_000,
            logins_per_minute: 100_000,
            password_hashes_in_flight: 0,
            streams: crate::config::StreamConfig {
                // Short, so tests see batches soon.
                stream_batch_ms: 100,
                stream_keepalive_ms: 15_000,
                stream_stall_ms: 30_000,
                stream_resume_secs: 3600,
                streams_per_user: 10,
                streams_per_process: 15_000,
                tickets_per_user: 20,
                tcp_user_timeout_ms: 20_000,
                cors_allowed_origins: Vec::new(),
            },
        };
        adjust(&mut config);
        // As `presence-api serve` does before it listens.
        presence_model::settings::agree_on_timings(
            &mut db.pool().get().expect("connection"),
            config.timings(),
        )
        .expect("one set of timings");
        Self::start(std::sync::Arc::new(db), config).await
    }

    /// Starts the app, and waits until published changes reach its streams (when Redis is
    /// reachable), so a test's first stream misses nothing.
    async fn start(db: std::sync::Arc<TestDatabase>, config: Config) -> Self {
        let app = Application::build(&config).expect("application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let metrics_port = app.metrics_port();
        let state = app.state();
        actix_web::rt::spawn(app.run_until_stopped());
        let streams = state.streams.clone();
        eventually(std::time::Duration::from_secs(2), || {
            std::future::ready(streams.is_following())
        })
        .await;
        Self {
            address,
            metrics_port,
            db,
            config,
            state,
            client: awc::Client::default(),
        }
    }

    /// Another API replica on the same database and Redis prefix, in this process, with
    /// `adjust` applied to a copy of this one's settings.
    pub async fn replica(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.config.clone();
        adjust(&mut config);
        Self::start(self.db.clone(), config).await
    }

    /// Opens `GET /api/presence/stream/?<query>`, authenticated by `token` if given (else
    /// by the ticket in the query), resuming after `last_event_id` if given; the error
    /// response if it is refused.
    pub async fn open_stream(
        &self,
        query: &str,
        token: Option<&str>,
        last_event_id: Option<i64>,
    ) -> Result<EventStream, Response> {
        let mut request = self
            .client
            .get(self.url(&format!("/api/presence/stream/?{query}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            request = request.insert_header(("Last-Event-ID", id.to_string()));
        }
        let mut response = request.send().await.expect("request reaches the server");
        if response.status() != StatusCode::OK {
            let bytes = response.body().await.expect("body");
            return Err(Response {
                status: response.status(),
                headers: response.headers().clone(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            });
        }
        Ok(EventStream {
            headers: response.headers().clone(),
            body: Box::pin(response),
            buffer: Vec::new(),
        })
    }

    /// A stream ticket for `token`.
    pub async fn ticket(&self, token: &str) -> String {
        let response = self.post("/api/presence/tickets/", Some(token), None).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        response.body["ticket"].as_str().expect("ticket").to_owned()
    }

    /// Writes the activity the app deferred, as its periodic flush would.
    pub async fn flush(&self) {
        crate::activity::flush(&self.state).await;
    }

    /// Runs the sweep's work now, as a tick would (without claiming one, and with no
    /// outage behind it); the transitions it recorded.
    pub fn sweep(&self) -> Vec<presence_model::events::PresenceChanged> {
        let mut conn = self.db.pool().get().expect("connection");
        presence_model::sweeps::sweep(&mut conn, self.config.timings(), chrono::TimeDelta::zero())
            .expect("sweep")
    }

    /// Drops the app's cached sessions, as their trust running out would.
    pub fn forget_cached_sessions(&self) {
        self.state.sessions.forget_sessions();
    }

    /// A counter or gauge of the app's Prometheus metrics (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics_text().await, name)
    }

    /// The app's Prometheus text exposition.
    pub async fn metrics_text(&self) -> String {
        let mut response = self
            .client
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await
            .expect("metrics");
        assert_eq!(response.status(), actix_web::http::StatusCode::OK);
        String::from_utf8(response.body().await.expect("body").to_vec()).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Sends `request` with an optional bearer token and reads the JSON body (Null if empty).
    pub async fn send(
        &self,
        request: awc::ClientRequest,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let mut response = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        }
        .expect("request reaches the server");
        let bytes = response.body().limit(64 * 1024 * 1024).await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        };
        Response {
            status: response.status(),
            headers: response.headers().clone(),
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(self.client.get(self.url(path)), token, None)
            .await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Option<&Value>) -> Response {
        self.send(self.client.post(self.url(path)), token, body)
            .await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Option<&Value>) -> Response {
        self.send(self.client.put(self.url(path)), token, body)
            .await
    }

    pub fn request(&self, method: actix_web::http::Method, path: &str) -> awc::ClientRequest {
        self.client.request(method, self.url(path))
    }

    /// Registers `username`; returns the new user's id.
    pub async fn register(&self, username: &str) -> i64 {
        let body = json!({ "username": username, "password": PASSWORD });
        let response = self.post("/api/users/register/", None, Some(&body)).await;
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        response.body["id"].as_i64().expect("id")
    }

    /// Logs `username` in; returns the bearer token.
    pub async fn login(&self, username: &str) -> String {
        let body = json!({ "username": username, "password": PASSWORD });
        let response = self.post("/api/users/login/", None, Some(&body)).await;
        assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
        response.body["token"].as_str().expect("token").to_owned()
    }

    /// Registers and logs in `username`; returns (id, token).
    pub async fn sign_up(&self, username: &str) -> (i64, String) {
        let id = self.register(username).await;
        (id, self.login(username).await)
    }

    /// An admin, made the way operators make one (`presence-api create-admin`); returns a token.
    pub async fn admin(&self) -> String {
        let pool = self.db.pool().clone();
        actix_web::web::block(move || users::create_or_promote_admin(&pool, "admin", PASSWORD))
            .await
            .unwrap()
            .unwrap();
        self.login("admin").await
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    pub event: String,
    pub id: Option<i64>,
    pub data: Value,
}

/// A stream being read: its events one at a time (comments and `retry:` skipped).
pub struct EventStream {
    pub headers: actix_web::http::header::HeaderMap,
    body: std::pin::Pin<
        Box<
            dyn futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>,
        >,
    >,
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event within `limit`; `None` if none came or the stream ended.
    pub async fn next(&mut self, limit: std::time::Duration) -> Option<Event> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_event(&String::from_utf8_lossy(&block)) {
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await;
            match chunk {
                Ok(Some(Ok(bytes))) => self.buffer.extend_from_slice(&bytes),
                _ => return None,
            }
        }
    }

    /// Whether the server ended the stream within `limit` (events until then dropped).
    pub async fn ends_within(&mut self, limit: std::time::Duration) -> bool {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(_))) => {}
                Ok(_) => return true,
                Err(_) => return false,
            }
        }
    }
}

fn parse_event(block: &str) -> Option<Event> {
    let (mut event, mut id, mut data) = (None, None, String::new());
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("id: ") {
            id = value.parse().ok();
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push_str(value);
        }
    }
    Some(Event {
        event: event?,
        id,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    })
}

/// A child process of one of our binaries, killed if the test ends without stopping it.
/// Its log (stderr) is collected as it is written.
pub struct Process {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    pub fn spawn(mut command: std::process::Command) -> Self {
        use std::io::BufRead;
        let mut child = command
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

    /// The port from the process's "listening on <addr> (port <port>)" log line.
    pub fn port(&self) -> u16 {
        self.logged_port("listening on ")
    }

    /// The port of an API process's metrics ("metrics on <addr> (port <port>)").
    pub fn metrics_port(&self) -> u16 {
        self.logged_port("metrics on ")
    }

    fn logged_port(&self, what: &str) -> u16 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let log = self.log();
            let port = log.lines().find_map(|line| {
                let (_, rest) = line.split_once(what)?;
                rest.split("(port ")
                    .nth(1)?
                    .trim_end_matches(')')
                    .parse()
                    .ok()
            });
            if let Some(port) = port {
                return port;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no port logged:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
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
    }
}

/// `<binary> serve` (the `presence-api` binary, `env!("CARGO_BIN_EXE_presence-api")` in a
/// test) on `db`, on a free port, with its own Redis prefix and `env` on top.
pub fn spawn_api(binary: &str, db: &TestDatabase, env: &[(&str, &str)]) -> Process {
    let mut command = std::process::Command::new(binary);
    command
        .arg("serve")
        .env("DATABASE_URL", db.url())
        .env("REDIS_URL", test_redis_url())
        .env("REDIS_PREFIX", test_prefix(db))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("METRICS_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    Process::spawn(command)
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
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
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
