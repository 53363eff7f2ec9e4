//! `conductor`: the operator CLI.

mod backend;
mod cli;
mod commands;
mod error;

use clap::Parser;
use cli::{Cli, Command};
use error::CliError;

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CONDUCTOR_LOG_LEVEL").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("{e}");
        std::process::exit(e.exit_code);
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let global = cli.global;
    match cli.command {
        Command::Topic(cmd) => commands::topic::run(&global, cmd).await,
        Command::Produce(args) => commands::produce::run(&global, args).await,
        Command::Consume(args) => commands::consume::run(&global, args).await,
        Command::Schema(cmd) => commands::schema::run(cmd),
    }
}
