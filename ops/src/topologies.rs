//! Loading topology files and running them in this process.

use crate::error::CliError;
use conductor_connectors::neo4j::{Neo4jConfig, Neo4jGraphSink};
use conductor_engine::log::Log;
use conductor_engine::runtime::TopicSink;
use conductor_engine::runtime::{RunningTopology, StatusHandle, Topology, TopologyConfig};
use conductor_engine::store::ProjectionStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The shipped topology files, compiled into the binary: what `run`,
/// `demo` and `topology status` use unless `--topologies DIR` (or
/// `topologies` in the config file) names a directory.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "entities.toml",
        include_str!("../../topologies/entities.toml"),
    ),
    (
        "embeddings_enrich.toml",
        include_str!("../../topologies/embeddings_enrich.toml"),
    ),
    (
        "embeddings.toml",
        include_str!("../../topologies/embeddings.toml"),
    ),
    (
        "vector_index.toml",
        include_str!("../../topologies/vector_index.toml"),
    ),
    (
        "er_by_tenant.toml",
        include_str!("../../topologies/er_by_tenant.toml"),
    ),
    (
        "er_candidates.toml",
        include_str!("../../topologies/er_candidates.toml"),
    ),
    (
        "lineage.toml",
        include_str!("../../topologies/lineage.toml"),
    ),
];

/// Where [`load`] takes topologies from, for messages.
pub fn source(flag: Option<&PathBuf>, file: Option<&PathBuf>) -> String {
    match flag.or(file) {
        Some(dir) => dir.display().to_string(),
        None => "the built-in topologies (pass --topologies DIR for others)".into(),
    }
}

/// The topologies to use: every `*.toml` of `--topologies DIR` (or the
/// config file's `topologies`), else the built-in ones.
pub fn load(flag: Option<PathBuf>, file: Option<PathBuf>) -> Result<Vec<TopologyConfig>, CliError> {
    match flag.or(file) {
        Some(dir) => load_dir(&dir),
        None => BUILTIN
            .iter()
            .map(|(name, text)| {
                conductor_processors::parse_topology(text).map_err(|problems| {
                    CliError::plain(format!("built-in topology {name}: {problems:?}"))
                })
            })
            .collect(),
    }
}

/// Parses one topology file, every problem listed.
pub fn load_file(path: &Path) -> Result<TopologyConfig, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::plain(format!("cannot read {}: {e}", path.display())))?;
    conductor_processors::parse_topology(&text).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        CliError {
            message: format!("{} is not a valid topology ({} problem{}):\n{}", path.display(), problems.len(), if problems.len() == 1 { "" } else { "s" }, list.join("\n")),
            hint: Some("fix the keys above; `conductor topology validate FILE` checks a file without running it".into()),
            exit_code: 1,
        }
    })
}

/// Every `*.toml` in `dir`, sorted by file name; fails listing every bad file.
pub fn load_dir(dir: &Path) -> Result<Vec<TopologyConfig>, CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        CliError::new(
            format!("cannot read topology directory {}: {e}", dir.display()),
            "pass --topologies DIR (the repository ships ./topologies)",
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut configs = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match load_file(&p) {
            Ok(c) => configs.push(c),
            Err(e) => errors.push(e.message),
        }
    }
    if !errors.is_empty() {
        return Err(CliError::new(
            errors.join("\n"),
            "`conductor topology validate FILE` checks one file",
        ));
    }
    if configs.is_empty() {
        return Err(CliError::new(
            format!("no topology files (*.toml) in {}", dir.display()),
            "pass --topologies DIR",
        ));
    }
    let mut names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(CliError::plain(format!(
            "two topology files declare the name `{}`",
            w[0]
        )));
    }
    Ok(configs)
}

/// Topologies running in this process.
pub struct Running {
    pub statuses: Vec<StatusHandle>,
    topologies: Vec<RunningTopology>,
}

/// Starts a worker and a relay per topology ([`Topology::start`]), and a
/// Neo4j graph sink for each whose processor has a graph when `neo4j` is set.
pub async fn start(
    configs: Vec<TopologyConfig>,
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
    neo4j: Option<&Neo4jConfig>,
) -> Result<Running, CliError> {
    let mut running = Running {
        statuses: Vec::new(),
        topologies: Vec::new(),
    };
    // Topics one topology emits and another reads exist before either starts.
    let mut built = Vec::new();
    for config in configs {
        let processor = build_processor(&config)?;
        for (topic, partitions) in processor.output_topics() {
            conductor_engine::runtime::worker::ensure_topic(log.as_ref(), &topic, partitions)
                .await?;
        }
        built.push((config, processor));
    }
    for (config, processor) in built {
        let mut sinks: Vec<Box<dyn TopicSink>> = Vec::new();
        if let (Some(neo4j), Some(_)) = (neo4j, processor.graph()) {
            sinks.push(Box::new(Neo4jGraphSink::new(neo4j.clone(), &config.name)));
        }
        let topology =
            Topology::start(config, processor, log.clone(), store.clone(), sinks).await?;
        running.statuses.push(topology.status.clone());
        running.topologies.push(topology);
    }
    Ok(running)
}

/// [`start`], then reports the topologies' runs as lineage
/// (`run_lineage::RunReporter`, unless `[lineage] report = false`): what
/// `conductor run` and `conductor demo` start.
pub async fn start_reported(
    settings: &crate::settings::Settings,
    configs: Vec<TopologyConfig>,
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
) -> Result<(Running, Option<Arc<crate::run_lineage::RunReporter>>), CliError> {
    let reported = configs.clone();
    let running = start(configs, log.clone(), store.clone(), settings.neo4j.as_ref()).await?;
    let reporter =
        crate::run_lineage::RunReporter::start(settings, &reported, &running.statuses, log, store)
            .await;
    Ok((running, reporter))
}

/// The registry entry a topology names.
pub fn registered(
    config: &TopologyConfig,
) -> Result<&'static conductor_engine::processor::RegisteredProcessor, CliError> {
    conductor_processors::find(&config.processor).ok_or_else(|| {
        CliError::new(
            format!(
                "topology {}: unknown processor `{}`",
                config.name, config.processor
            ),
            format!(
                "registered processors: {}",
                conductor_processors::names().join(", ")
            ),
        )
    })
}

/// Builds a topology's processor from its `[processor_config]`.
pub fn build_processor(
    config: &TopologyConfig,
) -> Result<Box<dyn conductor_engine::processor::Processor>, CliError> {
    registered(config)?
        .build(&config.processor_config)
        .map_err(|problems| config_problems(config, &problems))
}

fn config_problems(
    config: &TopologyConfig,
    problems: &[conductor_engine::runtime::config::ConfigProblem],
) -> CliError {
    let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
    CliError::new(
        format!(
            "topology {}: bad [processor_config]:\n{}",
            config.name,
            list.join("\n")
        ),
        "`conductor topology validate FILE` lists every problem",
    )
}

impl Running {
    /// Resolves once every topology has committed all of its input and
    /// relayed all of its output — downstream topologies included — or one
    /// of them failed.
    pub async fn caught_up(&self) {
        while !self.is_idle().await {}
    }

    /// Looks at every topology twice, 250 ms apart: idle when both looks
    /// find everything read, committed and relayed at the same committed
    /// positions (see `conductor_engine::runtime::progress`). A failed
    /// topology counts as idle: nothing more will come of it.
    pub async fn is_idle(&self) -> bool {
        let mut looks = Vec::with_capacity(2);
        for _ in 0..2 {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            if self.topologies.iter().any(|t| t.failed()) {
                return true;
            }
            let mut look = Vec::with_capacity(self.topologies.len());
            for t in &self.topologies {
                match t.progress().await {
                    Ok(p) if p.is_done() => look.push(p),
                    Ok(_) => return false,
                    Err(e) => {
                        tracing::debug!(topology = %t.name, error = %e, "progress unknown");
                        return false;
                    }
                }
            }
            looks.push(look);
        }
        looks[0] == looks[1]
    }

    /// Resolves with the error of the first relay that stopped for good: its
    /// changefeed and derived topics stop with it (the log refuses writes
    /// after a failed fsync, another process took the relay over), so the
    /// process must not go on folding as if nothing happened.
    pub async fn relay_stopped(&self) -> String {
        loop {
            for s in &self.statuses {
                let snap = s.snapshot();
                if snap.relay.state == conductor_engine::runtime::RelayState::Failed {
                    return format!(
                        "topology {}: relay stopped: {}",
                        snap.name,
                        snap.relay.error.unwrap_or_default()
                    );
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Stops gracefully: workers finish their batch, then relays empty the outbox.
    pub async fn shutdown(self) -> Result<(), CliError> {
        for t in &self.topologies {
            t.begin_shutdown();
        }
        let mut failures = Vec::new();
        for t in self.topologies {
            failures.extend(t.finish().await);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(CliError::plain(failures.join("\n")))
        }
    }
}
