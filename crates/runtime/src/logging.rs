//! Logging set-up, the same in both binaries.

/// Loads `.env` if present (real environment variables win), then logs through
/// `env_logger` at `RUST_LOG` (default `info`).
pub fn init() {
    dotenvy::dotenv().ok();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
}
