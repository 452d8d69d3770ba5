//! The deployment files agree with the binaries: docker-compose.yml sets exactly the
//! environment variables each binary reads, and .env.example documents all of them.

use std::collections::BTreeSet;
use std::path::Path;

use clap::Args;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The variables a binary's settings come from, plus env_logger's `RUST_LOG`.
fn read_by(command: clap::Command) -> BTreeSet<String> {
    command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .chain(["RUST_LOG".to_owned()])
        .collect()
}

fn compose_environment(compose: &Yaml, service: &str) -> BTreeSet<String> {
    compose["services"][service]["environment"]
        .as_hash()
        .unwrap_or_else(|| panic!("services.{service}.environment is a map"))
        .keys()
        .map(|key| key.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn compose_sets_exactly_what_the_binaries_read() {
    let api = read_by(presence_api::config::Config::augment_args(
        clap::Command::new("api"),
    ));
    let worker = read_by(presence_worker::config::Config::augment_args(
        clap::Command::new("worker"),
    ));
    let compose = YamlLoader::load_from_str(&repo_file("docker-compose.yml")).unwrap();
    assert_eq!(compose_environment(&compose[0], "api"), api);
    assert_eq!(compose_environment(&compose[0], "worker"), worker);
}

#[test]
fn env_example_documents_every_variable() {
    let api = read_by(presence_api::config::Config::augment_args(
        clap::Command::new("api"),
    ));
    let worker = read_by(presence_worker::config::Config::augment_args(
        clap::Command::new("worker"),
    ));
    let documented: BTreeSet<String> = repo_file(".env.example")
        .lines()
        .filter_map(|line| {
            let (name, _) = line.trim_start_matches(['#', ' ']).split_once('=')?;
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_')
                .then(|| name.to_owned())
        })
        .collect();
    let mut expected: BTreeSet<String> = api.union(&worker).cloned().collect();
    // Read by `presence-api create-admin` only.
    expected.insert("ADMIN_PASSWORD".to_owned());
    assert_eq!(documented, expected);
}
