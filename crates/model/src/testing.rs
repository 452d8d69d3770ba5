//! Test support (feature `testing`): a fresh, migrated database per test, dropped after it,
//! so tests run in parallel and never see each other's rows.

use std::sync::atomic::{AtomicU32, Ordering};

use diesel::RunQueryDsl;

use crate::db::{self, DbPool};

/// The server tests create their databases on; `TEST_DATABASE_URL` overrides it.
///
/// Without TLS: the test processes start and stop many servers and pools, and OpenSSL's
/// clean-up at process exit races libpq connections still being closed by other threads
/// (seen here as a crash after all tests had passed). The binaries keep libpq's default.
pub const DEFAULT_TEST_SERVER_URL: &str =
    "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

fn default_server() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_SERVER_URL.to_owned())
}

pub struct TestDatabase {
    name: String,
    url: String,
    pool: DbPool,
}

impl TestDatabase {
    /// Creates and migrates `presence_test_<pid>_<n>`. Panics if PostgreSQL is unreachable:
    /// these are tests, and the message says what to start.
    pub fn new() -> Self {
        Self::on_server(&default_server())
    }

    /// Like [`TestDatabase::new`], on the PostgreSQL server at `server_url` (a test's own).
    pub fn on_server(server_url: &str) -> Self {
        let db = Self::uncreated_on(server_url);
        db::create_database_if_missing(&db.url).expect("create the test database");
        db::run_migrations(&mut db.pool.get().expect("connection")).expect("migrations");
        db
    }

    /// A name for a test database that does not exist yet (dropped after the test if
    /// something created it): for testing what creates and migrates databases.
    pub fn uncreated() -> Self {
        Self::uncreated_on(&default_server())
    }

    fn uncreated_on(server: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let (without_query, query) = server.split_once('?').unwrap_or((server, ""));
        let base = without_query
            .rsplit_once('/')
            .map_or(without_query, |(base, _)| base);
        let name = format!(
            "presence_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let url = if query.is_empty() {
            format!("{base}/{name}")
        } else {
            format!("{base}/{name}?{query}")
        };
        db::drop_database(&url).unwrap_or_else(|e| {
            panic!("tests need PostgreSQL at {server} (set TEST_DATABASE_URL): {e}")
        });
        let pool = db::build_pool(&url, 4, std::time::Duration::from_secs(5));
        Self { name, url, pool }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name, unique to this test (a handy prefix for its Redis keys).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// Runs test-setup SQL (say, moving `last_seen` into the past); returns rows affected.
    pub fn execute(&self, sql: &str) -> usize {
        let mut conn = self.pool.get().expect("connection");
        diesel::sql_query(sql)
            .execute(&mut conn)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Takes `lock` (say `LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE`) in a transaction
    /// of a connection of its own, held until the guard is dropped: the queries that need
    /// it wait, so a test can pile requests up behind it.
    pub fn hold(&self, lock: &str) -> HeldLock {
        use diesel::connection::SimpleConnection;
        let mut conn = self.pool.get().expect("connection");
        conn.batch_execute(&format!("BEGIN; {lock}"))
            .unwrap_or_else(|e| panic!("{lock}: {e}"));
        HeldLock(conn)
    }

    /// Runs a query returning one `bigint` column named `n`, such as `SELECT count(*) AS n ...`.
    pub fn query_i64(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.pool.get().expect("connection");
        diesel::sql_query(sql)
            .get_result::<Row>(&mut conn)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    }
}

/// A lock held in an open transaction (see [`TestDatabase::hold`]); released on drop.
pub struct HeldLock(
    diesel::r2d2::PooledConnection<diesel::r2d2::ConnectionManager<diesel::PgConnection>>,
);

impl Drop for HeldLock {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        if let Err(e) = self.0.batch_execute("COMMIT") {
            eprintln!("could not release a held lock: {e}");
        }
    }
}

impl Default for TestDatabase {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Err(e) = db::drop_database(&self.url) {
            eprintln!("could not drop test database {}: {e}", self.url);
        }
    }
}

/// The timings of the model's tests: the defaults of the binaries.
pub const TIMINGS: crate::settings::Timings = crate::settings::Timings {
    offline_after_secs: 120,
    away_after_secs: 300,
};

/// Registers `name` (password `password123`) and returns the user's id.
pub fn register(db: &TestDatabase, name: &str) -> crate::ids::UserId {
    crate::users::register(db.pool(), TIMINGS, name, "password123")
        .expect("register")
        .id()
}

/// What the SQL functions `presence_of` and `presence_public` answer for `facts` at `at`
/// (for the test that holds the Rust rule to them).
pub fn sql_presence(
    conn: &mut diesel::pg::PgConnection,
    facts: &crate::facts::UserFacts,
    timings: crate::settings::Timings,
    at: chrono::DateTime<chrono::Utc>,
) -> (crate::vocabulary::Presence, crate::vocabulary::Presence) {
    use crate::sql::{presence_of, presence_public};
    let args = || {
        (
            facts.connected,
            facts.last_seen,
            facts.active_at,
            facts.availability,
            facts.availability_until,
        )
    };
    let (connected, last_seen, active_at, availability, until) = args();
    let of = presence_of(
        connected,
        last_seen,
        active_at,
        availability,
        until,
        timings.window(),
        timings.away_after(),
        at,
    );
    let (connected, last_seen, active_at, availability, until) = args();
    let public = presence_public(
        connected,
        last_seen,
        active_at,
        availability,
        until,
        timings.window(),
        timings.away_after(),
        at,
    );
    diesel::select((of, public))
        .get_result(conn)
        .expect("the SQL rule answers")
}
