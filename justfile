# presence: `just run` starts the service, `just test` runs every check.

set dotenv-load := false

# List the recipes.
default:
    @just --list

# Run the service on the local PostgreSQL and Redis: migrations, then the API and one
# worker together. Ctrl-C stops both.
run:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -p presence-api -p presence-worker
    target/debug/presence-api migrate
    target/debug/presence-api serve & api=$!
    target/debug/presence-worker run & worker=$!
    trap 'kill -TERM $api $worker 2>/dev/null || true; wait' EXIT
    wait -n

# Start one more worker replica (the sweep still runs once per tick across all of them).
worker:
    cargo run -p presence-worker -- run

# Apply pending migrations (creates the database if needed).
migrate:
    cargo run -p presence-api -- migrate

# Formatting, lints, then every test against the local PostgreSQL and Redis.
test: lint
    cargo test --workspace

# rustfmt and clippy, warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
