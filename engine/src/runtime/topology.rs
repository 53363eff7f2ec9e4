//! One topology running in this process: its worker (fold + commit), its
//! relay (outbox → log) and its sinks (graph topic → Neo4j), wired the same
//! way for `conductor run`, the topology test driver and the soak scenarios.
//!
//! [`Topology::prepare`] builds the pair for callers that step the worker
//! themselves (the test driver, benchmarks); [`Topology::start`] also spawns
//! both as named tasks and returns a [`RunningTopology`] to watch and stop.

use super::config::TopologyConfig;
use super::progress::Progress;
use super::relay::{Relay, RelayError};
use super::sink::{SinkRunError, SinkRunner, TopicSink};
use super::status::{StatusHandle, TopologyState};
use super::worker::{RuntimeError, Worker};
use crate::log::Log;
use crate::processor::Processor;
use crate::store::ProjectionStore;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

impl From<RelayError> for RuntimeError {
    fn from(e: RelayError) -> Self {
        match e {
            RelayError::Log(l) => RuntimeError::Log(l),
            RelayError::Store(s) => RuntimeError::Store(s),
        }
    }
}

/// Starts topologies (see the module doc).
pub struct Topology;

impl Topology {
    /// The worker (migrations done, positions loaded, state restored) and
    /// its relay, not yet running.
    pub async fn prepare(
        config: TopologyConfig,
        processor: Box<dyn Processor>,
        log: Arc<dyn Log>,
        store: Arc<dyn ProjectionStore>,
    ) -> Result<(Worker, Relay), RuntimeError> {
        let name = config.name.clone();
        let worker = Worker::start(config, processor, log.clone(), store.clone()).await?;
        let relay = Relay::start(&name, log, store).await?;
        Ok((worker, relay))
    }

    /// Prepares the topology and runs worker, relay and `sinks` in the
    /// background. The sinks follow the topology's graph topic
    /// (`ig.graph.<name>`); pass none for a processor without a graph.
    pub async fn start(
        config: TopologyConfig,
        processor: Box<dyn Processor>,
        log: Arc<dyn Log>,
        store: Arc<dyn ProjectionStore>,
        sinks: Vec<Box<dyn TopicSink>>,
    ) -> Result<RunningTopology, RuntimeError> {
        let name = config.name.clone();
        let graph_topic = config.graph_topic();
        let sources = config.sources.topics.clone();
        let (worker, relay) = Self::prepare(config, processor, log.clone(), store.clone()).await?;
        let status = worker.status.clone();
        let committed = worker.committed.clone();
        let (worker_stop, worker_rx) = watch::channel(false);
        let (relay_stop, relay_rx) = watch::channel(false);
        let span = tracing::info_span!("topology", name = %name);
        let worker = tokio::spawn(tracing::Instrument::instrument(worker.run(worker_rx), span));
        let span = tracing::info_span!("relay", name = %name);
        let relay = tokio::spawn(tracing::Instrument::instrument(
            relay.report_to(status.clone()).run(committed, relay_rx),
            span,
        ));
        let (sink_stop, sink_rx) = watch::channel(false);
        let sinks = sinks
            .into_iter()
            .map(|sink| {
                let span = tracing::info_span!("sink", name = %name, kind = sink.kind());
                let runner =
                    SinkRunner::new(&name, &graph_topic, log.clone(), sink, status.clone());
                tokio::spawn(tracing::Instrument::instrument(
                    runner.run(sink_rx.clone()),
                    span,
                ))
            })
            .collect();
        tracing::info!(topology = %name, "topology started");
        Ok(RunningTopology {
            name,
            sources,
            log,
            store,
            status,
            worker_stop,
            relay_stop,
            sink_stop,
            worker,
            relay,
            sinks,
        })
    }
}

/// A topology whose worker and relay run as tasks.
pub struct RunningTopology {
    pub name: String,
    sources: Vec<String>,
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
    pub status: StatusHandle,
    worker_stop: watch::Sender<bool>,
    relay_stop: watch::Sender<bool>,
    sink_stop: watch::Sender<bool>,
    worker: JoinHandle<Result<(), RuntimeError>>,
    relay: JoinHandle<Result<(), RelayError>>,
    sinks: Vec<JoinHandle<Result<(), SinkRunError>>>,
}

impl RunningTopology {
    /// Where the topology stands, from the store and the log (see
    /// [`super::progress`]): to tell when a chain of topologies is idle.
    pub async fn progress(&self) -> Result<Progress, RuntimeError> {
        super::progress::progress(
            &self.name,
            &self.sources,
            self.log.as_ref(),
            self.store.as_ref(),
        )
        .await
    }

    /// Whether the worker has halted.
    pub fn failed(&self) -> bool {
        self.status.snapshot().state == TopologyState::Failed
    }

    /// Asks the worker to stop after its batch in hand (see [`Self::finish`]).
    pub fn begin_shutdown(&self) {
        let _ = self.worker_stop.send(true);
    }

    /// Stops gracefully: the worker drains (commits its batch, snapshots its
    /// state), then the relay empties the outbox, then the sinks write what
    /// the relay put on their topic. Returns every failure.
    pub async fn finish(self) -> Vec<String> {
        let name = &self.name;
        let _ = self.worker_stop.send(true);
        let mut failures = Vec::new();
        match self.worker.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("topology {name}: {e}")),
            Err(e) => failures.push(format!("topology {name}: worker task failed: {e}")),
        }
        let _ = self.relay_stop.send(true);
        match self.relay.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("topology {name}: relay: {e}")),
            Err(e) => failures.push(format!("topology {name}: relay task failed: {e}")),
        }
        let _ = self.sink_stop.send(true);
        for sink in self.sinks {
            match sink.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e.to_string()),
                Err(e) => failures.push(format!("topology {name}: sink task failed: {e}")),
            }
        }
        self.status.update(|st| {
            if st.state != TopologyState::Failed {
                st.state = TopologyState::Stopped;
            }
        });
        failures
    }
}
