//! The migrations and `schema.rs` agree, and the migrations run down and up again.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_migrations::MigrationHarness;
use presence_model::db::{self, MIGRATIONS};
use presence_model::testing::TestDatabase;

/// Table → column → (SQL type, nullable), as `schema.rs` declares them.
fn declared() -> BTreeMap<String, BTreeMap<String, (String, bool)>> {
    let source = include_str!("../src/schema.rs");
    let mut tables = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in source.lines().map(str::trim) {
        if let Some((name, _)) = line.split_once(" (").filter(|_| line.ends_with(") {")) {
            current = Some(name.to_owned());
            tables.insert(name.to_owned(), BTreeMap::new());
        } else if let (Some(table), Some((column, kind))) = (&current, line.split_once(" -> ")) {
            let kind = kind.trim_end_matches(',');
            let (kind, nullable) = match kind.strip_prefix("Nullable<") {
                Some(inner) => (inner.trim_end_matches('>'), true),
                None => (kind, false),
            };
            let sql = match kind {
                "Int8" => "bigint",
                "Int4" => "integer",
                "Text" => "text",
                "Bool" => "boolean",
                "Bytea" => "bytea",
                "Jsonb" => "jsonb",
                "Timestamptz" => "timestamp with time zone",
                other => panic!("map the diesel type {other} here"),
            };
            tables
                .get_mut(table)
                .unwrap()
                .insert(column.to_owned(), (sql.to_owned(), nullable));
        } else if line == "}" {
            current = None;
        }
    }
    tables
}

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

/// The same, as the migrated database has them (tables, not views or partitions).
fn migrated(conn: &mut PgConnection) -> BTreeMap<String, BTreeMap<String, (String, bool)>> {
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' \
         AND table_name IN (SELECT relname FROM pg_class \
                            WHERE relkind IN ('r', 'p') AND NOT relispartition)",
    )
    .load(conn)
    .unwrap();
    let mut tables: BTreeMap<String, BTreeMap<String, (String, bool)>> = BTreeMap::new();
    for column in columns {
        tables.entry(column.table_name).or_default().insert(
            column.column_name,
            (column.data_type, column.is_nullable == "YES"),
        );
    }
    tables
}

#[test]
fn schema_rs_matches_the_migrations() {
    let db = TestDatabase::new();
    let declared = declared();
    assert!(declared.contains_key("users") && declared.contains_key("presence_events"));
    assert_eq!(migrated(&mut db.pool().get().unwrap()), declared);
}

#[test]
fn migrations_run_down_and_up_again() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    let before = migrated(&mut conn);
    let reverted = conn.revert_all_migrations(MIGRATIONS).unwrap().len();
    let in_repository = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().join("up.sql").exists())
        .count();
    assert_eq!(reverted, in_repository);
    assert!(migrated(&mut conn).is_empty(), "every table dropped");
    let applied = db::run_migrations(&mut conn).unwrap();
    assert_eq!(applied.len(), reverted);
    assert_eq!(migrated(&mut conn), before);
}

/// A column dropped from a partitioned table stays in its row layout, and partitions made
/// later lack it: every row inserted through the parent is then converted from one layout
/// to the other. The event log is made anew instead (migration `000019`).
#[test]
fn the_partitioned_event_log_has_no_dropped_columns() {
    let db = TestDatabase::new();
    let dropped = db.query_i64(
        "SELECT count(*) AS n FROM pg_attribute \
         WHERE attrelid = 'presence_events'::regclass AND attisdropped",
    );
    assert_eq!(dropped, 0);
}
