//! `conductor schema check|list|show`.

use crate::cli::SchemaCommand;
use crate::error::CliError;
use conductor_schemas::SchemaRegistry;
use conductor_schemas::compat::{self, CompatMode};

pub fn run(cmd: SchemaCommand) -> Result<(), CliError> {
    match cmd {
        SchemaCommand::Check { old, new, mode } => {
            let mode: CompatMode = mode
                .parse()
                .map_err(|e: String| CliError::usage(e, "use --mode backward|forward|full"))?;
            match compat::check_files(&old, &new, mode) {
                Ok(()) => {
                    println!("compatible: {} can replace {} ({mode})", new.display(), old.display());
                    Ok(())
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
