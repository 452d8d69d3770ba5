//! The `presence-api` binary as operators run it: several replicas at once, and SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use presence_api::testing::{Process, remove_redis_keys, test_redis_url};
use presence_model::testing::TestDatabase;

fn serve(db: &TestDatabase) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_presence-api"));
    command
        .arg("serve")
        .env("DATABASE_URL", db.url())
        .env("REDIS_URL", test_redis_url())
        .env("REDIS_PREFIX", db.url().rsplit('/').next().unwrap())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info");
    Process::spawn(command)
}

/// Sends a raw HTTP/1.1 request and returns the whole response.
fn http(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn replicas_starting_together_create_and_migrate_one_fresh_database() {
    let db = TestDatabase::uncreated();
    let replicas: Vec<Process> = (0..3).map(|_| serve(&db)).collect();
    for replica in &replicas {
        let response = http(
            replica.port(),
            "GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        );
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{response}\n{}",
            replica.log()
        );
    }
    assert_eq!(
        db.query_i64("SELECT count(*) AS n FROM __diesel_schema_migrations"),
        3
    );
    assert_eq!(
        db.query_i64(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name IN ('users', 'sessions', 'sweep_runs', 'presence_events')"
        ),
        4
    );
    let logs: Vec<String> = replicas
        .into_iter()
        .map(|replica| {
            let (status, log) = replica.terminate(Duration::from_secs(15));
            assert!(status.is_some_and(|s| s.success()), "{log}");
            log
        })
        .collect();
    let applied: Vec<&str> = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter_map(|line| line.split("migrations applied: ").nth(1))
        .collect();
    let mut applied = applied;
    applied.sort_unstable();
    assert_eq!(
        applied,
        ["0", "0", "3"],
        "one replica migrated, under the lock"
    );
    remove_redis_keys(&test_redis_url(), db.url().rsplit('/').next().unwrap());
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits() {
    let db = TestDatabase::new();
    let server = serve(&db);
    let port = server.port();
    let body = r#"{"username": "draining", "password": "password123"}"#;
    let mut in_flight = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        in_flight,
        "POST /api/users/register/ HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    server.sigterm();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no new connections once stopping"
    );
    in_flight.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    in_flight.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    let (status, log) = server.wait(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{log}");
    assert_eq!(
        db.query_i64("SELECT count(*) AS n FROM users WHERE username = 'draining'"),
        1
    );
}
