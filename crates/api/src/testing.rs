//! Test support (feature `testing`): [`TestApp`] runs the real application on a random
//! port over a fresh database and its own Redis prefix, with request helpers.

use crate::config::{Config, DatabaseConfig};
use crate::startup::Application;
use actix_web::http::StatusCode;
use presence_model::testing::TestDatabase;
use presence_model::users;
use serde_json::{Value, json};

use presence_testkit::{
    Process, eventually, metric_value, remove_redis_keys, test_prefix, test_redis_url,
};

pub const PASSWORD: &str = "correct horse battery";

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
            presence_cache_users: 100_000,
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
                stream_resume_window: 100_000,
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

    /// Writes all the activity the app deferred, due or not, as a full buffer does.
    pub async fn flush(&self) {
        self.state.write_all_activity().await;
    }

    /// Runs the sweep's work now, as a tick would (without claiming one, and with no
    /// outage behind it); the transitions it recorded.
    pub fn sweep(&self) -> Vec<presence_model::events::Transition> {
        let mut conn = self.db.pool().get().expect("connection");
        presence_model::sweeps::sweep(&mut conn, self.config.timings(), chrono::TimeDelta::zero())
            .expect("sweep")
    }

    /// Until every change published so far has reached this app's subscription (a resume
    /// from memory then holds them all); false if that takes over 10 s.
    pub async fn received_everything_published(&self) -> bool {
        let (db, streams) = (self.db.clone(), self.state.streams.clone());
        eventually(std::time::Duration::from_secs(10), || {
            let published = db.query_i64("SELECT sent_through AS n FROM event_publication");
            let received = streams.last_received().map_or(0, |revision| revision.0);
            std::future::ready(received >= published)
        })
        .await
    }

    /// Whether published changes reach this app's streams now.
    pub fn is_following(&self) -> bool {
        self.state.streams.is_following()
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
