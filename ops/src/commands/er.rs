//! `conductor er explain --tenant T LEFT RIGHT`: why a pair was (or was not)
//! proposed, from the ER topology's state (its stored snapshot plus a fold
//! of what came after it, read from the log; nothing is written).

use crate::backend::{Access, open_log, open_store};
use crate::cli::ErCommand;
use crate::error::CliError;
use crate::settings::Settings;
use crate::topologies;
use conductor_processors::er::ErCandidatesProcessor;
use conductor_processors::er::config::ErConfig;
use conductor_processors::er::explain::{Explanation, explain};

pub async fn run(settings: &Settings, cmd: ErCommand) -> Result<(), CliError> {
    let ErCommand::Explain {
        tenant,
        left,
        right,
        topology,
        topologies: dir,
        json,
    } = cmd;
    let explanation = explain_pair(settings, &topology, dir, &tenant, &left, &right).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explanation).unwrap_or_default()
        );
    } else {
        println!("{}", explanation.text());
    }
    Ok(())
}

/// The explanation of a pair from `topology`'s state.
pub async fn explain_pair(
    settings: &Settings,
    topology: &str,
    dir: Option<std::path::PathBuf>,
    tenant: &str,
    left: &str,
    right: &str,
) -> Result<Explanation, CliError> {
    let configs = topologies::load(dir.clone(), settings.topologies.clone())?;
    let config = configs
        .into_iter()
        .find(|c| c.name == topology)
        .ok_or_else(|| {
            CliError::usage(
                format!(
                    "no topology named `{topology}` in {}",
                    topologies::source(dir.as_ref(), settings.topologies.as_ref())
                ),
                "pass --topology NAME (`conductor topology list` shows them)",
            )
        })?;
    if config.processor != "er_candidates" {
        return Err(CliError::usage(
            format!(
                "topology `{topology}` runs `{}`, not er_candidates",
                config.processor
            ),
            "pass --topology with an er_candidates topology",
        ));
    }
    let er: ErConfig =
        config
            .processor_config
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| {
                CliError::plain(format!(
                    "topology {topology}: bad [processor_config]: {}",
                    e.message()
                ))
            })?;
    let mut processor = ErCandidatesProcessor::new(er);
    let log = open_log(settings, Access::Read).await?;
    let store = open_store(settings).await?;
    conductor_engine::runtime::state::restore(
        &mut processor,
        &config,
        log.as_ref(),
        store.as_ref(),
    )
    .await?;
    explain(&processor, tenant, left, right).map_err(|why| {
        CliError::new(
            why,
            format!("has `{topology}` run? (`conductor run` or `conductor demo`)"),
        )
    })
}
