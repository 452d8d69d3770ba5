# syntax=docker/dockerfile:1
# One image, both binaries: `presence-api` (the default command) and `presence-worker`.

# cargo-chef builds the dependencies from a recipe of the manifests alone, so that layer
# is reused until Cargo.toml or Cargo.lock change, whatever happens to the sources.
FROM rust:1-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin presence-api --bin presence-worker

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home presence
COPY --from=builder /app/target/release/presence-api /app/target/release/presence-worker /usr/local/bin/
USER presence:presence
ENV LISTEN_ADDR=0.0.0.0:8000 \
    WORKER_HTTP_ADDR=0.0.0.0:9100 \
    RUST_LOG=info
EXPOSE 8000 9100
# The API's liveness; the worker service overrides it with its own port (9100).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["presence-api", "serve"]
