//! The connection pool, database creation and migrations.

use std::time::Duration;

use diesel::IntoSql;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::{Connection, ExpressionMethods, QueryDsl, QueryResult, RunQueryDsl, sql_query};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::Error;
use crate::sql::{pg_advisory_lock, pg_advisory_unlock};

pub use diesel::pg::PgConnection;

/// Where both binaries look for PostgreSQL unless `DATABASE_URL` says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/presence";

pub type DbPool = Pool<ConnectionManager<PgConnection>>;
pub type PooledConn = PooledConnection<ConnectionManager<PgConnection>>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Held while migrating, so replicas starting together migrate one at a time.
const MIGRATION_LOCK_KEY: i64 = 0x7072_6573_656e_6365; // "presence"

/// Builds the pool without waiting for the database: a process that starts while
/// PostgreSQL is down keeps running, and each checkout fails after `checkout_timeout`
/// until it is back (the API answers 503 then, rather than hanging).
///
/// Connections are tested on checkout (one `SELECT 1` round trip): after PostgreSQL
/// restarts, every pooled connection is dead, and without the test each would fail one
/// request before r2d2 learned it was broken. They are opened on demand (`min_idle` 0),
/// never by r2d2's background threads, which would otherwise keep dialling a database
/// that is down or gone (and can still be inside libpq when the process exits).
pub fn build_pool(database_url: &str, max_size: u32, checkout_timeout: Duration) -> DbPool {
    Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .test_on_check_out(true)
        .connection_timeout(checkout_timeout)
        .build_unchecked(ConnectionManager::new(database_url))
}

/// How many times a transaction that lost a deadlock or a serialization conflict is run.
const TRANSACTION_ATTEMPTS: u32 = 3;

/// Runs `f` in a transaction, again (up to [`TRANSACTION_ATTEMPTS`] in all) when
/// PostgreSQL aborted it to break a deadlock or a serialization conflict.
///
/// Transactions that change one user's presence lock that user's row first and cannot
/// deadlock with each other; the ones that lock many rows at once (the sweep, the flush
/// of deferred activity) can still meet in an unlucky order, and the loser is simply
/// run again.
pub(crate) fn transaction<T>(
    conn: &mut PgConnection,
    mut f: impl FnMut(&mut PgConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    let mut attempt = 1;
    loop {
        match conn.transaction(&mut f) {
            Err(e) if attempt < TRANSACTION_ATTEMPTS && is_retryable(&e) => {
                log::debug!("transaction attempt {attempt} lost a conflict, retrying: {e}");
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Deadlocks (SQLSTATE 40P01, which diesel does not classify) and serialization failures.
fn is_retryable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as E};
    match e {
        E::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        E::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().starts_with("deadlock detected")
        }
        _ => false,
    }
}

/// A checkout and a round trip to the database, for readiness checks.
pub fn ping(pool: &DbPool) -> Result<(), Error> {
    let mut conn = pool.get()?;
    diesel::select(1.into_sql::<diesel::sql_types::Integer>()).execute(&mut conn)?;
    Ok(())
}

/// Applies pending migrations under a PostgreSQL advisory lock; returns the versions applied.
pub fn run_migrations(conn: &mut PgConnection) -> Result<Vec<String>, Error> {
    diesel::select(pg_advisory_lock(MIGRATION_LOCK_KEY)).execute(conn)?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|e| Error::Migration(e.to_string()));
    diesel::select(pg_advisory_unlock(MIGRATION_LOCK_KEY)).execute(conn)?;
    applied
}

/// Creates the database named in `database_url` unless it exists; returns whether it did.
///
/// Connects to the server's `postgres` database to do so. Safe to race: a replica that
/// loses the race sees "already exists" and carries on.
pub fn create_database_if_missing(database_url: &str) -> Result<bool, Error> {
    let (server_url, name) = split_database_url(database_url)?;
    let mut conn = PgConnection::establish(&server_url)?;
    let exists: bool = diesel::select(diesel::dsl::exists(
        pg_database::table.filter(pg_database::datname.eq(name)),
    ))
    .get_result(&mut conn)?;
    if exists {
        return Ok(false);
    }
    // DDL, with a name that cannot be bound.
    match sql_query(format!("CREATE DATABASE {}", quote_ident(name))).execute(&mut conn) {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Drops the database named in `database_url`, closing its open connections first.
pub fn drop_database(database_url: &str) -> Result<(), Error> {
    let (server_url, name) = split_database_url(database_url)?;
    let mut conn = PgConnection::establish(&server_url)?;
    // DDL, with a name that cannot be bound.
    sql_query(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(name)
    ))
    .execute(&mut conn)?;
    Ok(())
}

diesel::table! {
    pg_database (datname) {
        datname -> Text,
    }
}

fn is_duplicate(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as E};
    match e {
        E::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => true,
        // 42P04 duplicate_database has no diesel kind of its own.
        E::DatabaseError(_, info) => info.message().contains("already exists"),
        _ => false,
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `postgres://u@h:5432/app?x=y` → (`postgres://u@h:5432/postgres?x=y`, `app`).
fn split_database_url(url: &str) -> Result<(String, &str), Error> {
    let invalid = || {
        Error::Connection(diesel::ConnectionError::InvalidConnectionUrl(format!(
            "expected postgres://user@host:port/database, got a URL without a database name \
             ({} characters)",
            url.len()
        )))
    };
    let after_scheme = url.find("://").ok_or_else(invalid)? + 3;
    let slash = after_scheme + url[after_scheme..].find('/').ok_or_else(invalid)?;
    let end = url[slash..].find('?').map_or(url.len(), |q| slash + q);
    let name = &url[slash + 1..end];
    if name.is_empty() {
        return Err(invalid());
    }
    Ok((format!("{}/postgres{}", &url[..slash], &url[end..]), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_database_name_from_url() {
        let (server, name) =
            split_database_url("postgres://u:p@h:5432/app?sslmode=disable").unwrap();
        assert_eq!(server, "postgres://u:p@h:5432/postgres?sslmode=disable");
        assert_eq!(name, "app");
        let (server, name) = split_database_url("postgresql://h/x").unwrap();
        assert_eq!((server.as_str(), name), ("postgresql://h/postgres", "x"));
    }

    #[test]
    fn rejects_url_without_database() {
        assert!(split_database_url("postgres://h:5432").is_err());
        assert!(split_database_url("postgres://h:5432/").is_err());
        assert!(split_database_url("host=h dbname=x").is_err());
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }
}
