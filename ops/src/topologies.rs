//! Loading topology files and running them in this process.

use crate::error::CliError;
use conductor_engine::log::Log;
use conductor_engine::runtime::relay::{Relay, RelayError};
use conductor_engine::runtime::{RuntimeError, StatusHandle, TopologyConfig, Worker};
use conductor_engine::store::ProjectionStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The topology directory: `--topologies`, config file, or `./topologies`.
pub fn topologies_dir(flag: Option<PathBuf>, file: Option<PathBuf>) -> PathBuf {
    flag.or(file).unwrap_or_else(|| PathBuf::from("topologies"))
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
    worker_stop: watch::Sender<bool>,
    relay_stop: watch::Sender<bool>,
    workers: Vec<(String, JoinHandle<Result<(), RuntimeError>>)>,
    relays: Vec<(String, JoinHandle<Result<(), RelayError>>)>,
}

/// Starts a worker and a relay per topology.
pub async fn start(
    configs: Vec<TopologyConfig>,
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
) -> Result<Running, CliError> {
    let (worker_stop, worker_rx) = watch::channel(false);
    let (relay_stop, relay_rx) = watch::channel(false);
    let mut running = Running {
        statuses: Vec::new(),
        worker_stop,
        relay_stop,
        workers: Vec::new(),
        relays: Vec::new(),
    };
    for config in configs {
        let processor = build_processor(&config)?;
        let name = config.name.clone();
        let worker = Worker::start(config, processor, log.clone(), store.clone()).await?;
        let relay = Relay::start(&name, log.clone(), store.clone())
            .await
            .map_err(relay_error)?;
        running.statuses.push(worker.status.clone());
        let committed = worker.committed.clone();
        let rx = worker_rx.clone();
        let span = tracing::info_span!("topology", name = %name);
        running.workers.push((
            name.clone(),
            tokio::spawn(tracing::Instrument::instrument(worker.run(rx), span)),
        ));
        let rx = relay_rx.clone();
        let span = tracing::info_span!("relay", name = %name);
        running.relays.push((
            name.clone(),
            tokio::spawn(tracing::Instrument::instrument(
                relay.run(committed, rx),
                span,
            )),
        ));
        tracing::info!(topology = %name, "topology started");
    }
    Ok(running)
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

fn relay_error(e: RelayError) -> CliError {
    match e {
        RelayError::Log(l) => l.into(),
        RelayError::Store(s) => s.into(),
    }
}

impl Running {
    /// Resolves once every topology has consumed all of its input (lag 0),
    /// or one of them failed.
    pub async fn caught_up(&self) {
        loop {
            let done = self.statuses.iter().all(|s| {
                let snap = s.snapshot();
                snap.state == conductor_engine::runtime::TopologyState::Failed
                    || (!snap.partitions.is_empty() && snap.partitions.iter().all(|p| p.lag == 0))
            });
            if done {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Stops gracefully: workers finish their batch, then relays empty the outbox.
    pub async fn shutdown(self) -> Result<(), CliError> {
        let _ = self.worker_stop.send(true);
        let mut failures = Vec::new();
        for (name, w) in self.workers {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("topology {name}: {e}")),
                Err(e) => failures.push(format!("topology {name}: worker task failed: {e}")),
            }
        }
        let _ = self.relay_stop.send(true);
        for (name, r) in self.relays {
            match r.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("topology {name}: relay: {e}")),
                Err(e) => failures.push(format!("topology {name}: relay task failed: {e}")),
            }
        }
        for s in &self.statuses {
            s.update(|st| {
                if st.state != conductor_engine::runtime::TopologyState::Failed {
                    st.state = conductor_engine::runtime::TopologyState::Stopped;
                }
            });
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(CliError::plain(failures.join("\n")))
        }
    }
}
