//! Test support (feature `testing`): a fresh, migrated database per test, dropped after it,
//! so tests run in parallel and never see each other's rows.

use std::sync::atomic::{AtomicU32, Ordering};

use diesel::RunQueryDsl;

use crate::db::{self, DbPool};

/// The server tests create their databases on; `TEST_DATABASE_URL` overrides it.
pub const DEFAULT_TEST_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDatabase {
    url: String,
    pool: DbPool,
}

impl TestDatabase {
    /// Creates and migrates `presence_test_<pid>_<n>`. Panics if PostgreSQL is unreachable:
    /// these are tests, and the message says what to start.
    pub fn new() -> Self {
        let db = Self::uncreated();
        db::create_database_if_missing(&db.url).expect("create the test database");
        db::run_migrations(&mut db.pool.get().expect("connection")).expect("migrations");
        db
    }

    /// A name for a test database that does not exist yet (dropped after the test if
    /// something created it): for testing what creates and migrates databases.
    pub fn uncreated() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let server = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_SERVER_URL.to_owned());
        let base = server
            .rsplit_once('/')
            .map_or(server.as_str(), |(base, _)| base);
        let name = format!(
            "presence_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let url = format!("{base}/{name}");
        db::drop_database(&url).unwrap_or_else(|e| {
            panic!("tests need PostgreSQL at {server} (set TEST_DATABASE_URL): {e}")
        });
        let pool = db::build_pool(&url, 4);
        Self { url, pool }
    }

    pub fn url(&self) -> &str {
        &self.url
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
