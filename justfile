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

# Benchmarks in release against the local PostgreSQL and Redis (not part of `just test`):
# prints a table with ratios against a baseline measured in the same run, and writes
# bench/results/latest.json. See BENCHMARKS.md.
bench:
    python3 bench/run.py

# Apply pending migrations (creates the database if needed).
migrate:
    cargo run -p presence-api -- migrate

# Formatting, lints, the compose file, every test against local PostgreSQL and Redis, the
# browser tests, the contract through generated clients, then two minutes of schemathesis
# against the live API.
test: lint compose-config
    cargo test --workspace
    just browser
    just contract
    just rules
    just fuzz

# The operator page and presence-client.js in Debian's Chromium (playwright-core; see
# .ci/browser). On failure, screenshots and console logs are printed and kept in
# .ci/browser/artifacts.
browser:
    cargo build -q -p presence-api -p presence-worker
    cd .ci/browser && ([ -d node_modules ] || npm ci --no-audit --no-fund --silent) && npm test --silent

# The API contract as generated clients meet it, against a live API (see .ci/contract/run):
# the document validates, openapi-typescript + openapi-fetch compile under tsc --strict and
# every answer matches its schema, eventsource resumes a dropped stream,
# openapi-python-client generates without warnings and its flow parses every answer.
contract:
    .ci/contract/run

# The Prometheus rules and the Grafana dashboard (deploy/): promtool checks the rules and
# runs their unit tests, parses every dashboard expression, then a real Prometheus scrapes
# a real API and worker with the rules loaded (.ci/scrape). Debian's Prometheus 2.42 is
# unpacked into .ci/prometheus on first use (.ci/prometheus-tools).
rules:
    #!/usr/bin/env bash
    set -euo pipefail
    bin=$(.ci/prometheus-tools)
    "$bin/promtool" check rules deploy/prometheus/presence.rules.yml
    (cd deploy/prometheus && "$bin/promtool" test rules presence.rules.test.yml)
    "$bin/promtool" check rules "$(.ci/dashboard-exprs)"
    .ci/scrape

# Property-based fuzzing of the live API against its OpenAPI document (schemathesis, fixed
# seed): fails on any server error or schema violation.
fuzz seconds="120":
    .ci/fuzz {{seconds}}

# The container image, built and run for real (not part of `just test`; `.ci/run` runs it
# after): podman builds the Dockerfile on base images made here from Debian's packages,
# then runs migrate, serve and the worker against the local PostgreSQL and Redis and checks
# the user, the healthchecks, a login, a sweep and a clean SIGTERM (.ci/image/run).
image:
    .ci/image/run

# Parse docker-compose.yml with a real compose parser (no Docker engine needed).
compose-config:
    #!/usr/bin/env bash
    set -euo pipefail
    if docker compose version >/dev/null 2>&1; then
        docker compose -f docker-compose.yml config --quiet
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose -f docker-compose.yml config --quiet
    else
        echo "compose-config: no compose parser here (apt-get install docker-compose); skipped" >&2
        exit 0
    fi
    echo "docker-compose.yml: valid"

# rustfmt and clippy, warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
