//! `conductor sql "SELECT …" [--format table|csv|json|parquet] [--out FILE]`.

use crate::backend::{Access, open_log, open_store};
use crate::cli::{SqlArgs, SqlFormat};
use crate::error::CliError;
use crate::settings::Settings;
use conductor_replay::sql::output::{self, Format};
use conductor_replay::sql::{SqlContext, SqlError};
use std::time::Instant;

pub async fn run(settings: &Settings, args: SqlArgs) -> Result<(), CliError> {
    let format = match args.format {
        SqlFormat::Table => Format::Table,
        SqlFormat::Csv => Format::Csv,
        SqlFormat::Json => Format::Json,
        SqlFormat::Parquet => Format::Parquet,
    };
    if format == Format::Parquet && args.out.is_none() {
        return Err(CliError::usage(
            "--format parquet writes a binary file",
            "add --out FILE.parquet",
        ));
    }
    let log = open_log(settings, Access::Read).await?;
    // The projection tables are optional: topics alone can be queried.
    let store = match open_store(settings).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e.message, "no projection store; only topics can be queried");
            None
        }
    };
    // Tables of the topologies' configs, then of the processors' default
    // configs; no processor is built.
    let configs = crate::topologies::load(args.topologies.clone(), settings.topologies.clone())?;
    let mut projections: Vec<conductor_engine::projection::TableSpec> = Vec::new();
    let configured = configs.iter().filter_map(|c| {
        conductor_processors::find(&c.processor)?
            .tables(&c.processor_config)
            .ok()
    });
    let defaults = conductor_processors::REGISTRY
        .iter()
        .filter_map(|r| r.tables(&toml::Table::new()).ok());
    for table in configured.chain(defaults).flatten() {
        if !projections.iter().any(|t| t.name == table.name) {
            projections.push(table);
        }
    }
    let started = Instant::now();
    let ctx = SqlContext::new(log, store, projections)
        .await
        .map_err(sql_error)?;
    let result = ctx.query(&args.query).await.map_err(sql_error)?;
    let elapsed = started.elapsed();
    match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)?;
            output::write(&result, format, std::io::BufWriter::new(file)).map_err(sql_error)?;
            eprintln!("{} rows written to {}", result.rows(), path.display());
        }
        None => output::write(&result, format, std::io::BufWriter::new(std::io::stdout()))
            .map_err(sql_error)?,
    }
    if args.timing {
        eprintln!(
            "{} rows in {:.3}s (loading the named tables and running the query)",
            result.rows(),
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}

fn sql_error(e: SqlError) -> CliError {
    match e {
        SqlError::Query(message) => CliError::new(
            message,
            "`conductor topic list` shows the topics; projections are named as in `conductor topology list`",
        ),
        SqlError::Log(l) => l.into(),
        SqlError::Store(s) => s.into(),
        SqlError::Internal(m) => CliError::plain(m),
    }
}
