# presence: `just run` starts the service, `just test` runs every check.

set dotenv-load := false

# List the recipes.
default:
    @just --list

# Run the service on the local PostgreSQL (migrations applied first).
run:
    cargo run -p presence-api -- serve

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
