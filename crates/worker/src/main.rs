//! `presence-worker`: run the sweep schedule and the job consumers (default), or sweep once.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use presence_worker::config::Config;
use presence_worker::{jobs, startup};

#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sweep schedule and publish transitions until SIGINT/SIGTERM.
    Run(Config),
    /// Sweep once now, print how many users were marked offline, and exit.
    SweepOnce(Config),
}

#[tokio::main]
async fn main() -> ExitCode {
    presence_runtime::logging::init();
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Run(config) => match presence_runtime::signals::shutdown_signal() {
            Ok(signal) => startup::run(config, signal).await,
            Err(e) => Err(jobs::Error::Startup(format!("cannot handle signals: {e}"))),
        },
        Command::SweepOnce(config) => sweep_once(&config).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn sweep_once(config: &Config) -> Result<(), jobs::Error> {
    let state = startup::connect(config).await?;
    let started = std::time::Instant::now();
    let run = jobs::sweep_tick(&state, chrono::Utc::now()).await?;
    let marked = run.map_or(0, |run| run.users_marked_offline());
    println!("{marked} users marked offline");
    log::info!(
        "swept, queued the publishing of the transitions, scheduled the coming ends and \
         took a sample, in {:?}",
        started.elapsed()
    );
    Ok(())
}
