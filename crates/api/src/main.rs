//! `presence-api`: serve the API (default), apply migrations, or create an admin.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use presence_api::config::{
    Config, DEFAULT_AWAY_AFTER_SECS, DEFAULT_OFFLINE_AFTER_SECS, DatabaseConfig, policy_for,
};
use presence_api::startup::Application;
use presence_model::{db, settings, users};

#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve HTTP (the default).
    Serve(Config),
    /// Create the database if needed, apply pending migrations, and (given
    /// OFFLINE_AFTER_SECS or AWAY_AFTER_SECS) set the timings every API and worker uses.
    Migrate {
        #[command(flatten)]
        database: DatabaseConfig,
        /// The presence window to store for every process (see `serve`).
        #[arg(long, env = "OFFLINE_AFTER_SECS")]
        offline_after_secs: Option<u32>,
        /// The away timeout to store for every process (see `serve`).
        #[arg(long, env = "AWAY_AFTER_SECS")]
        away_after_secs: Option<u32>,
        /// The fleet's flush interval: new timings must be safe with it (see `serve`).
        #[arg(long, env = "LAST_SEEN_FLUSH_MS", default_value_t = 10_000)]
        last_seen_flush_ms: u32,
        /// The fleet's heartbeat interval: new timings must be safe with it (see `serve`).
        #[arg(long, env = "HEARTBEAT_INTERVAL_MS", default_value_t = 30_000)]
        heartbeat_interval_ms: u32,
    },
    /// Make a user admin, creating it if needed. The password comes from ADMIN_PASSWORD,
    /// else from the first line of standard input.
    CreateAdmin {
        #[arg(long)]
        username: String,
        #[command(flatten)]
        database: DatabaseConfig,
    },
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    presence_runtime::logging::init();
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(config) => serve(config),
        Command::Migrate {
            database,
            offline_after_secs,
            away_after_secs,
            last_seen_flush_ms,
            heartbeat_interval_ms,
        } => migrate(&database).and_then(|()| {
            if offline_after_secs.is_none() && away_after_secs.is_none() {
                return Ok(());
            }
            let mut conn = database.pool(1).get()?;
            let stored = settings::timings(&mut conn).ok();
            let timings = settings::Timings {
                offline_after_secs: offline_after_secs
                    .or(stored.map(|t| t.offline_after_secs))
                    .unwrap_or(DEFAULT_OFFLINE_AFTER_SECS),
                away_after_secs: away_after_secs
                    .or(stored.map(|t| t.away_after_secs))
                    .unwrap_or(DEFAULT_AWAY_AFTER_SECS),
            };
            // Running replicas adopt them within a second: they must be safe for them.
            policy_for(timings, last_seen_flush_ms, heartbeat_interval_ms)?;
            settings::store_timings(&mut conn, timings)?;
            log::info!(
                "timings set for every process: offline after {} s, away after {} s",
                timings.offline_after_secs,
                timings.away_after_secs
            );
            Ok(())
        }),
        Command::CreateAdmin { username, database } => create_admin(&username, &database),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(database: &DatabaseConfig) -> Result<()> {
    let url = &database.url.database_url;
    if db::create_database_if_missing(url)? {
        log::info!("created the database");
    }
    let mut conn = database.pool(1).get()?;
    let applied = db::run_migrations(&mut conn)?;
    log::info!("migrations applied: {}", applied.len());
    Ok(())
}

fn serve(config: Config) -> Result<()> {
    config.policy()?;
    migrate(&config.database)?;
    let mut conn = config.database.pool(1).get()?;
    settings::agree_on_timings(&mut conn, config.timings())?;
    settings::record_session_ttl(&mut conn, config.session_ttl_secs)?;
    // Times this process stamps are read by the database's clock (re-measured every
    // second by the revocation listener).
    let offset = presence_model::clock::calibrate(&mut conn)?;
    if offset.abs() > chrono::TimeDelta::seconds(1) {
        log::warn!(
            "this machine's clock is {offset} off the database's; stamping by the database's"
        );
    }
    drop(conn);
    actix_web::rt::System::new().block_on(async {
        let app = Application::build(&config)?;
        log::info!("listening on {}", app.addr());
        log::info!("metrics on {}", app.metrics_addr());
        presence_runtime::addresses::announce(&[
            ("http", app.addr()),
            ("metrics", app.metrics_addr()),
        ])?;
        app.run_until_stopped().await?;
        log::info!("stopped");
        Ok(())
    })
}

fn create_admin(username: &str, database: &DatabaseConfig) -> Result<()> {
    let password = match std::env::var("ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let pool = database.pool(1);
    let (id, created) = users::create_or_promote_admin(&pool, username, &password)?;
    if created {
        println!("created admin {username} (id {id})");
    } else {
        println!("made {username} (id {id}) an admin; their password is unchanged");
    }
    Ok(())
}
