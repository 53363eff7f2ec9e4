//! `conductor`: the operator CLI.

mod backend;
mod cli;
mod commands;
mod console;
mod error;
mod lineage_service;
mod run_lineage;
mod search_service;
mod server;
mod settings;
mod topologies;

use clap::Parser;

// The fold allocates many small, short-lived values (decoded events, rows,
// change events); mimalloc handles that churn markedly better than glibc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cli::{Cli, Command};
use error::CliError;

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONDUCTOR_LOG_LEVEL")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(console::LogWriter)
        // Colours for a terminal only: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    let settings = settings::Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Topic(cmd) => commands::topic::run(&settings, cmd).await,
        Command::Produce(args) => commands::produce::run(&settings, args).await,
        Command::Consume(args) => commands::consume::run(&settings, args).await,
        Command::Schema(cmd) => commands::schema::run(&settings, cmd).await,
        Command::Run(args) => commands::run::run(&settings, args).await,
        Command::Serve(args) => commands::serve::run(&settings, args).await,
        Command::Topology(cmd) => commands::topology::run(&settings, cmd).await,
        Command::Dlq(cmd) => commands::dlq::run(&settings, cmd).await,
        Command::Replay(cmd) => commands::replay::run(&settings, cmd).await,
        Command::Sql(args) => commands::sql::run(&settings, args).await,
        Command::Demo(args) => commands::demo::run(&settings, args).await,
        Command::Er(cmd) => commands::er::run(&settings, cmd).await,
        Command::Search(args) => commands::search::run(&settings, args).await,
        Command::Lineage(args) => commands::lineage::run(&settings, args).await,
        Command::Catalog(cmd) => commands::catalog::run(&settings, cmd).await,
    }
}
