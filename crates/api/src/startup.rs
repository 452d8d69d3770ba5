//! Building and running the HTTP server (the zero-to-production shape: tests build the
//! real application on port 0 and talk to it over HTTP).

use std::net::TcpListener;

use actix_web::body::MessageBody;
use actix_web::dev::Server;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{
    Condition, DefaultHeaders, Logger, Next, NormalizePath, TrailingSlash, from_fn,
};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{App, HttpMessage, HttpServer, web};
use futures_util::StreamExt;

use crate::activity::{self, ActivityBuffer};
use crate::config::Config;
use crate::errors::{self, ApiError, JSON_BODY_LIMIT};
use crate::metrics::Metrics;
use crate::presence_cache::PresenceCache;
use crate::routes;
use crate::session_cache::SessionCache;
use crate::state::AppState;
use crate::stream::{self, StreamHub};
use crate::throttle::{LoginThrottle, PasswordHashing};
use crate::tickets::Tickets;
use presence_model::feed;
use presence_model::jobs::presence_changes_channel;
use presence_runtime::nudges::{Asked, PublishNudges, StatusEnds};
use presence_runtime::redis_conn::LazyRedis;

/// The longest a request waits for Redis (tickets, the workers' reports) before a 503.
const REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// In-flight requests get this long to finish after SIGTERM/SIGINT.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

pub struct Application {
    addr: std::net::SocketAddr,
    metrics_addr: std::net::SocketAddr,
    server: Server,
    metrics_server: Server,
    state: web::Data<AppState>,
    /// This process's name in `activity_flushes` and the stream counts.
    replica: String,
}

impl Application {
    /// Connects the pool and binds the listener. Migrations are applied by the caller
    /// (`presence-api serve` does it before this).
    pub fn build(config: &Config) -> std::io::Result<Self> {
        let policy = config
            .policy()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let pool = config.database.pool(config.database.database_pool_size);
        let metrics = Metrics::new().map_err(std::io::Error::other)?;
        let (redis_url, prefix) = (&config.redis.redis_url, &config.redis.redis_prefix);
        let asked = Asked {
            sent: metrics.jobs_enqueued.clone(),
            failed: metrics.enqueue_failures.clone(),
        };
        // One connection for every Redis command (the job queue and the subscription
        // have their own).
        let redis = LazyRedis::new(redis_url, REDIS_TIMEOUT);
        let nudges = PublishNudges::new(&redis, prefix, asked.clone());
        let stream_metrics = metrics.streams.clone();
        let status_ends = StatusEnds::new(redis_url, prefix, asked);
        let presence =
            PresenceCache::new(config.presence_cache_users, metrics.presence_cache.clone());
        let replica = presence_runtime::replicas::replica_name("api");
        let sessions = SessionCache::new(
            &policy,
            config.session_ttl(),
            metrics.session_lookups.clone(),
        );
        let state = web::Data::new(AppState {
            pool,
            metrics,
            sessions,
            presence,
            activity: std::sync::Arc::new(ActivityBuffer::new(replica.clone())),
            nudges,
            status_ends,
            login_throttle: LoginThrottle::new(config.login_limits(), &redis, prefix),
            admission: crate::admission::Admission::new(config.admission_quotas(), &redis, prefix),
            hashing: PasswordHashing::new(config.password_hashes_in_flight()),
            policy: std::sync::RwLock::new(policy),
            session_ttl: config.session_ttl(),
            streams: std::sync::Arc::new(StreamHub::new(config.streams.settings(), stream_metrics)),
            tickets: Tickets::new(&redis, prefix, config.streams.tickets_per_user),
            redis,
            config_prefix: prefix.to_owned(),
        });
        let listener = presence_runtime::listeners::listen(&config.listen_addr)?;
        let metrics_listener = TcpListener::bind(&config.metrics_listen_addr)?;
        let metrics_addr = metrics_listener.local_addr()?;
        let metrics_server = metrics_server(metrics_listener, state.clone())?;
        let app_state = state.clone();
        let addr = listener.local_addr()?;
        let body_timeout = config.client_body_timeout();
        let origins = config.streams.origins();
        let user_timeout =
            std::time::Duration::from_millis(config.streams.tcp_user_timeout_ms.into());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(JSON_BODY_LIMIT)
                        .error_handler(errors::json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(errors::query_error))
                .app_data(web::PathConfig::default().error_handler(errors::path_error))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
                .wrap(from_fn(move |req, next| {
                    read_body_within(body_timeout, req, next)
                }))
                .wrap(from_fn(record_metrics))
                // No browser may read a JSON answer as HTML or script.
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
                .wrap(Condition::new(!origins.is_empty(), cors(&origins)))
                .wrap(NormalizePath::new(TrailingSlash::Trim))
                // One line per request; the path only, never the query string or headers.
                .wrap(
                    Logger::new("%{method}xi %U %s %Dms")
                        .custom_request_replace("method", |req| req.method().to_string()),
                )
        })
        .on_connect(move |connection, _| detect_dead_peers(connection, user_timeout))
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        // SIGINT and SIGTERM are handled in `run_until_stopped`, which ends the streams
        // first: they would otherwise hold the graceful shutdown for its whole timeout.
        .disable_signals()
        .listen(listener)?
        .run();
        let flush_period = app_state
            .policy()
            .flush_interval()
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(10));
        let (granularity_of, written_to) = (app_state.clone(), app_state.clone());
        actix_web::rt::spawn(activity::flush_periodically(
            app_state.activity.clone(),
            app_state.pool.clone(),
            flush_period,
            move || granularity_of.policy().flush_granularity(),
            // Its own writes: forgotten here at once (others hear of them).
            move |users| written_to.presence.forget(users),
        ));
        actix_web::rt::spawn(crate::listener::listen(
            app_state.clone(),
            config.database.url.database_url.clone(),
        ));
        actix_web::rt::spawn(crate::timings::follow_timings(
            app_state.clone(),
            config.last_seen_flush_ms,
            config.heartbeat_interval_ms,
        ));
        let pool = app_state.pool.clone();
        actix_web::rt::spawn(stream::follow_published_changes(
            app_state.streams.clone(),
            app_state.clone(),
            config.redis.redis_url.clone(),
            presence_changes_channel(&config.redis.redis_prefix),
            move || {
                let pool = pool.clone();
                async move {
                    presence_runtime::blocking::with_connection(&pool, feed::latest_revision)
                        .await
                        .ok()
                }
            },
        ));
        actix_web::rt::spawn(stream::counts::report_open_streams(
            app_state.streams.clone(),
            app_state.redis.clone(),
            config.redis.redis_prefix.clone(),
            replica.clone(),
        ));
        Ok(Self {
            replica,
            addr,
            metrics_addr,
            server,
            metrics_server,
            state: app_state,
        })
    }

    /// The address the API is served on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address `GET /metrics` is served on.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.metrics_addr
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_addr.port()
    }

    /// The state the handlers share (tests use it to flush deferred writes).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGINT/SIGTERM; then ends the streams at once (clients reconnect to
    /// another replica), drains in-flight requests, and writes the activity still
    /// deferred.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.handle();
        actix_web::rt::spawn(self.metrics_server);
        let handle = self.server.handle();
        let mut server = self.server;
        let signal = presence_runtime::signals::shutdown_signal()?;
        let served = tokio::select! {
            served = &mut server => served,
            () = signal => {
                log::info!("stopping: closing {} streams, draining requests", self.state.streams.open());
                self.state.streams.close_all();
                // The command is sent at once; the server future must run to act on it.
                let stopped = handle.stop(true);
                let served = server.await;
                stopped.await;
                served
            }
        };
        let granularity = self.state.policy().flush_granularity();
        (self.state.activity)
            .flush_and_forget(&self.state.pool, granularity)
            .await;
        stream::counts::withdraw(&self.state.redis, &self.state.config_prefix, &self.replica).await;
        metrics.stop(false).await;
        served
    }
}

/// `GET /metrics` on a listener of its own, for Prometheus on a private network.
fn metrics_server(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(routes::health::metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

/// Makes the kernel give up on a connection whose peer stopped answering: keep-alive probes
/// after 10 s idle, and at most `user_timeout` for sent data to be acknowledged. A stream's
/// next write then fails and the stream frees its place.
fn detect_dead_peers(connection: &dyn std::any::Any, user_timeout: std::time::Duration) {
    let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        return;
    };
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(10))
        .with_interval(std::time::Duration::from_secs(5))
        .with_retries(3);
    let applied = socket
        .set_tcp_keepalive(&keepalive)
        .and_then(|()| socket.set_tcp_user_timeout(Some(user_timeout)));
    if let Err(e) = applied {
        log::debug!("cannot set TCP keep-alive on a connection: {e}");
    }
}

/// Cross-origin access for the frontend's `origins`: the API and the stream, with the
/// headers they take (the token, JSON, `Last-Event-ID`).
fn cors(origins: &[String]) -> actix_cors::Cors {
    use actix_web::http::header;
    origins
        .iter()
        .fold(actix_cors::Cors::default(), |cors, origin| {
            cors.allowed_origin(origin)
        })
        .allowed_methods(["GET", "HEAD", "POST", "PUT", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("last-event-id"),
        ])
        .max_age(3600)
        // Another origin gets no CORS headers (its browser then refuses the answer), not
        // a non-JSON error.
        .block_on_origin_mismatch(false)
}

/// Counts every request by route template, method and status, with its latency.
async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await;
    };
    let _in_flight = state.metrics.request_started();
    let method = req.method().clone();
    let response = next.call(req).await;
    let (route, status) = match &response {
        Ok(response) => (response.request().match_pattern(), response.status()),
        // Refused by a middleware inside this one (408, 413): no route was matched.
        Err(e) => (None, e.as_response_error().status_code()),
    };
    state.metrics.observe(
        route.as_deref().unwrap_or("unmatched"),
        &method,
        status.as_u16(),
        started.elapsed(),
    );
    response
}

/// Reads the whole request body (at most [`JSON_BODY_LIMIT`]) before any handler runs, and
/// answers 408, closing the connection, if it does not arrive within `timeout`: a client
/// that sends headers and then stalls cannot hold a connection open indefinitely (actix
/// times out the headers only). Oversized bodies are refused as soon as they exceed the
/// limit.
async fn read_body_within(
    timeout: std::time::Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut payload = req.take_payload();
    let read = tokio::time::timeout(timeout, async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
            if body.len() + chunk.len() > JSON_BODY_LIMIT {
                return Err(ApiError::PayloadTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok::<Bytes, ApiError>(body.freeze())
    })
    .await;
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(ApiError::RequestTimeout.into()),
    };
    req.set_payload(actix_web::dev::Payload::from(body));
    next.call(req).await
}
