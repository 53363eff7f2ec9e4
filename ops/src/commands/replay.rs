//! `conductor replay rebuild|verify|swap|rollback`.

use crate::backend::{Access, cursor_key, open_log};
use crate::cli::{ReplayCommand, StoreBackend};
use crate::commands::topology::find;
use crate::error::CliError;
use crate::settings::Settings;
use conductor_engine::processor::Processor;
use conductor_engine::runtime::TopologyConfig;
use conductor_replay::rebuild::{RebuildRequest, ReplayFrom};
use conductor_replay::{Generation, GenerationHome, ReplayError};
use indicatif::ProgressBar;

pub async fn run(settings: &Settings, cmd: ReplayCommand) -> Result<(), CliError> {
    match cmd {
        ReplayCommand::Rebuild {
            topology,
            from,
            to,
            tenant,
            topologies,
        } => {
            let config = find(settings, topologies, &topology)?;
            let request = RebuildRequest {
                from: parse_from(settings, &from, &tenant)?,
                to_ms: to.as_deref().map(|t| parse_time("--to", t)).transpose()?,
            };
            rebuild(settings, &config, &request).await
        }
        ReplayCommand::Verify {
            topology,
            max_diffs,
            json,
            topologies,
        } => {
            let config = find(settings, topologies, &topology)?;
            verify(settings, &config, max_diffs, json).await
        }
        ReplayCommand::Swap {
            topology,
            rewind,
            topologies,
        } => {
            let config = find(settings, topologies, &topology)?;
            swap(settings, &config, Generation::Shadow, rewind).await
        }
        ReplayCommand::Rollback {
            topology,
            rewind,
            topologies,
        } => {
            let config = find(settings, topologies, &topology)?;
            swap(settings, &config, Generation::Previous, rewind).await
        }
    }
}

/// The generations of the configured projection store.
async fn home(settings: &Settings) -> Result<GenerationHome, CliError> {
    Ok(match settings.store {
        StoreBackend::Postgres => {
            GenerationHome::postgres(settings.database_url.as_deref().unwrap_or_default()).await?
        }
        StoreBackend::Sqlite => {
            let path = match settings.database_url.as_deref() {
                None => settings.data_dir.join("projections.db"),
                Some(url) => {
                    let path = url
                        .strip_prefix("sqlite://")
                        .or_else(|| url.strip_prefix("sqlite:"))
                        .map(|p| p.split('?').next().unwrap_or(p))
                        .filter(|p| !p.is_empty() && !p.contains(":memory:"));
                    match path {
                        Some(p) => p.into(),
                        None => {
                            return Err(CliError::usage(
                                format!("replay needs a SQLite database file, not `{url}`"),
                                "use --database-url sqlite://PATH or leave it unset for <data-dir>/projections.db",
                            ));
                        }
                    }
                }
            };
            GenerationHome::sqlite(&path).await?
        }
    })
}

fn processor(config: &TopologyConfig) -> Result<Box<dyn Processor>, CliError> {
    crate::topologies::build_processor(config)
}

fn parse_time(flag: &str, t: &str) -> Result<i64, CliError> {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .map_err(|e| {
            CliError::usage(
                format!("{flag} {t}: {e}"),
                "use an RFC 3339 time like 2026-02-01T12:00:00Z",
            )
        })
}

fn parse_from(settings: &Settings, from: &str, tenant: &str) -> Result<ReplayFrom, CliError> {
    if from == "earliest" {
        return Ok(ReplayFrom::Earliest);
    }
    if chrono::DateTime::parse_from_rfc3339(from).is_ok() {
        return Ok(ReplayFrom::Time(parse_time("--from", from)?));
    }
    let cursor = cursor_key(settings)?.decode(from, tenant).map_err(|e| {
        CliError::usage(
            format!("--from: not `earliest`, an RFC 3339 time, or a valid cursor: {e}"),
            "pass a cursor exactly as `conductor consume` printed it, with --tenant if it was issued to one",
        )
    })?;
    Ok(ReplayFrom::Positions(
        cursor
            .positions
            .into_iter()
            .map(|(p, o)| ((cursor.topic.clone(), p), o))
            .collect(),
    ))
}

fn progress_bar(what: &str) -> ProgressBar {
    crate::console::progress_bar(
        0,
        &format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} records  {{per_sec}}  eta {{eta}}"
        ),
    )
}

async fn rebuild(
    settings: &Settings,
    config: &TopologyConfig,
    request: &RebuildRequest,
) -> Result<(), CliError> {
    let log = open_log(settings, Access::Read).await?;
    let home = home(settings).await?;
    let bar = progress_bar("rebuilding");
    let report = conductor_replay::rebuild::rebuild(
        log,
        &home,
        config,
        processor(config)?,
        request,
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await
    .map_err(replay_error)?;
    bar.finish_and_clear();
    let rate = report.folded.records as f64 / report.seconds.max(1e-9);
    println!(
        "rebuilt {} into the shadow ({}): {} records in {:.1}s ({:.0} records/s), {} dead-lettered (suppressed)",
        config.name, report.shadow, report.folded.records, report.seconds, rate, report.folded.dead
    );
    if let Some(m) = &report.migration {
        println!(
            "a migration: live holds the output of `{}`, the shadow `{}`; its derived events wait in the shadow and are published when it is swapped in",
            m.from, m.to
        );
    }
    println!(
        "next: `conductor replay verify --topology {0}`, then `conductor replay swap --topology {0}`",
        config.name
    );
    Ok(())
}

async fn verify(
    settings: &Settings,
    config: &TopologyConfig,
    max_diffs: usize,
    json: bool,
) -> Result<(), CliError> {
    let log = open_log(settings, Access::Read).await?;
    let home = home(settings).await?;
    let report =
        conductor_replay::verify::verify(log, &home, config, processor(config)?, max_diffs)
            .await
            .map_err(replay_error)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!(
            "compared at {} (shadow folded {} more records to get there)",
            report
                .positions
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            report.caught_up_records
        );
        if let Some(m) = &report.migration {
            println!(
                "a migration from `{}` to `{}`: the rows differ by design, so only which rows exist (keys and versions) is compared",
                m.from, m.to
            );
        }
        for t in &report.tables {
            println!(
                "{:<16} {:<9} live {:>8} rows  shadow {:>8} rows  digest live {}  shadow {}",
                t.table,
                if t.equal() { "EQUAL" } else { "DIFFERENT" },
                t.live_rows,
                t.shadow_rows,
                &t.live_digest[..16],
                &t.shadow_digest[..16]
            );
            if !t.equal() {
                println!("  {} rows differ; the first ones:", t.differing_rows);
                for d in &t.first_differences {
                    println!("  key {}", serde_json::Value::from(d.key.clone()));
                    let short =
                        |d: &Option<String>| d.as_deref().map_or("-", |s| &s[..16]).to_string();
                    match &d.live {
                        Some(row) => println!("    live   ({}): {row}", short(&d.live_digest)),
                        None => println!("    live:   (no row)"),
                    }
                    match &d.shadow {
                        Some(row) => println!("    shadow ({}): {row}", short(&d.shadow_digest)),
                        None => println!("    shadow: (no row)"),
                    }
                }
            }
        }
    }
    if report.equal() {
        Ok(())
    } else {
        Err(CliError::plain(format!(
            "shadow and live of `{}` differ",
            config.name
        )))
    }
}

async fn swap(
    settings: &Settings,
    config: &TopologyConfig,
    incoming: Generation,
    rewind: bool,
) -> Result<(), CliError> {
    let log = open_log(settings, Access::Read).await?;
    let home = home(settings).await?;
    let report =
        conductor_replay::swap::swap(log, &home, config, processor(config)?, incoming, rewind)
            .await
            .map_err(replay_error)?;
    println!(
        "{} is live for {} (folded {} records to reach live's positions; control epoch {}{})",
        match incoming {
            Generation::Shadow => "the shadow",
            Generation::Previous => "the previous generation",
        },
        config.name,
        report.caught_up_records,
        report.control.epoch,
        if report.control.paused {
            ", still paused"
        } else {
            ""
        }
    );
    println!(
        "the outgoing generation is kept in {}; `conductor replay rollback --topology {}` puts it back",
        report.previous, config.name
    );
    if let Some(m) = &report.migration {
        println!(
            "a migration from `{}` to `{}`: the shadow's derived events are in live's outbox, and `conductor run` with the new configuration publishes them; a worker still running `{}` stops rather than mix the two",
            m.from, m.to, m.from
        );
    }
    Ok(())
}

fn replay_error(e: ReplayError) -> CliError {
    match e {
        ReplayError::Refused { message, hint } => CliError::new(message, hint),
        ReplayError::Store(s) => s.into(),
        ReplayError::Log(l) => l.into(),
        ReplayError::Runtime(r) => CliError::plain(r.to_string()),
    }
}
