//! The model's modules are layers: each imports only modules listed before it in
//! [`LAYERS`] (vocabulary and values, infrastructure, reads, the outbox, transitions,
//! accounts), so no two import each other and the order is the design. Checked over every
//! `crate::<module>` a module's code names (comments and doc links excepted).

use std::collections::BTreeMap;
use std::path::Path;

fn source(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The model's modules, lowest layer first: a module may import only those before it.
const LAYERS: &[&str] = &[
    // Vocabulary and values: no query behind them.
    "text_enum",
    "ids",
    "error",
    "schema",
    "sql",
    "vocabulary",
    "views",
    // Infrastructure: connections, clock, shared timings, job names, the policy.
    "db",
    "clock",
    "settings",
    "jobs",
    "policy",
    // The rule, in Rust, over what it reads.
    "facts",
    // Reads: what is shown, and the session rows.
    "shown",
    "counts",
    "tokens",
    // The outbox, and what streams read from it.
    "events",
    "feed",
    // The log's partitions, made ahead and dropped past the retention.
    "event_log",
    // The service's history for the operator page, sampled per sweep tick.
    "samples",
    // Transitions: the only code that locks a user row (the flush of deferred activity
    // updates rows, and locks them only as an UPDATE does).
    "flushes",
    "presence",
    "manual",
    "status_ends",
    "sweeps",
    "sessions",
    // What the worker deletes as time passes.
    "purges",
    // What a replica hears of the others' writes.
    "notifications",
    // Accounts, and the admins' list of them.
    "users",
    "directory",
    // Test support (feature `testing`).
    "testing",
];

fn layers() -> Vec<String> {
    LAYERS.iter().map(|m| (*m).to_owned()).collect()
}

/// The modules `lib.rs` declares.
fn declared() -> Vec<String> {
    let mut declared: Vec<String> = source("lib.rs")
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').to_owned())
        })
        .collect();
    declared.sort();
    declared
}

#[test]
fn every_module_has_its_layer() {
    let mut listed = layers();
    listed.sort();
    assert_eq!(declared(), listed);
}

/// The crate modules `code` names: `crate::x`, and `x` in `use crate::{x, y::z}`.
fn named_modules(code: &str, modules: &[String]) -> Vec<String> {
    let mut named = Vec::new();
    for line in code.lines() {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let group = rest
                .strip_prefix('{')
                .map(|inner| inner.split('}').next().unwrap_or(""));
            let names: Vec<&str> = match group {
                Some(inner) => inner.split(',').map(|item| item.trim()).collect(),
                None => vec![rest],
            };
            for name in names {
                let module: String = name
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&module) {
                    named.push(module);
                }
            }
        }
    }
    named
}

#[test]
fn each_module_imports_only_the_layers_below_it() {
    let layers = layers();
    assert!(layers.len() > 10, "{layers:?}");
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (rank, module) in layers.iter().enumerate() {
        let code = source(&format!("{module}.rs"));
        for named in named_modules(&code, &layers) {
            let named_rank = layers.iter().position(|m| *m == named).unwrap();
            if named_rank >= rank && named != *module {
                upward.entry(module.clone()).or_default().push(named);
            }
        }
    }
    assert!(
        upward.is_empty(),
        "modules that import from their own layer or above (reorder lib.rs, or move the \
         code down): {upward:?}"
    );
}

#[test]
fn no_module_is_two_files_long() {
    for module in layers() {
        let lines = source(&format!("{module}.rs")).lines().count();
        assert!(
            lines <= 400,
            "{module}.rs has {lines} lines: split it by job"
        );
    }
}

#[test]
fn the_check_sees_imports() {
    let modules: Vec<String> = ["db", "shown", "events"].map(String::from).to_vec();
    let code = "use crate::{db, shown::ShownRow};\n// crate::events in a comment\nlet x = crate::events::f();";
    assert_eq!(named_modules(code, &modules), ["db", "shown", "events"]);
}
