//! `conductor schema check|list|show`.

use crate::cli::SchemaCommand;
use crate::error::CliError;
use crate::settings::Settings;
use conductor_schemas::SchemaRegistry;
use conductor_schemas::compat::{self, CompatMode};

pub async fn run(settings: &Settings, cmd: SchemaCommand) -> Result<(), CliError> {
    match cmd {
        SchemaCommand::Check {
            old,
            new,
            mode,
            impact,
            topologies,
        } => {
            let mode: CompatMode = mode
                .parse()
                .map_err(|e: String| CliError::usage(e, "use --mode backward|forward|full"))?;
            match compat::check_files(&old, &new, mode) {
                Ok(()) => {
                    println!("compatible: {} can replace {} ({mode})", new.display(), old.display());
                    Ok(())
                }
                Err(report) if impact => {
                    let name = record_name(&new).or_else(|| record_name(&old)).ok_or_else(|| {
                        CliError::usage(
                            format!("{} names no record", new.display()),
                            "an event schema is an Avro record with a name",
                        )
                    })?;
                    println!("breaking: {report}");
                    let found = super::schema_impact::impact(settings, &name, topologies).await?;
                    print!("{}", found.text());
                    if found.touches_anyone() {
                        Err(CliError {
                            message: format!(
                                "the change to {name} breaks {} topolog{} and {} downstream job(s)",
                                found.topologies.len(),
                                if found.topologies.len() == 1 { "y" } else { "ies" },
                                found.downstream_jobs.len()
                            ),
                            hint: Some("make the change compatible (a default for a new field), or migrate the consumers first (`conductor replay rebuild`)".into()),
                            exit_code: 1,
                        })
                    } else {
                        println!("no topology consumes {name} here: the change breaks no one");
                        Ok(())
                    }
                }
                Err(report) => Err(CliError {
                    message: report.to_string(),
                    hint: Some(match mode {
                        CompatMode::Backward => "give new fields a default, and don't change a field's type except by promotion (int→long→float→double)".into(),
                        CompatMode::Forward => "only remove fields that have a default, and don't add enum symbols old readers lack a default for".into(),
                        CompatMode::Full => "only add or remove fields that have defaults".into(),
                    }),
                    exit_code: 1,
                }),
            }
        }
        SchemaCommand::List => {
            let registry = SchemaRegistry::builtin();
            for name in registry.names() {
                if let Some(s) = registry.get(name) {
                    println!("{name}\tfingerprint {:016x}", s.fingerprint);
                }
            }
            Ok(())
        }
        SchemaCommand::Show { name } => {
            let registry = SchemaRegistry::builtin();
            let schema = registry.get(&name).ok_or_else(|| {
                CliError::new(
                    format!("unknown schema `{name}`"),
                    "`conductor schema list` shows the known schemas",
                )
            })?;
            println!("{}", schema.source_text.trim_end());
            Ok(())
        }
    }
}

/// The record name of an .avsc file (`ig.events.EntityUpserted` →
/// `EntityUpserted`).
fn record_name(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let name = json["name"].as_str()?;
    Some(name.rsplit('.').next().unwrap_or(name).to_string())
}
