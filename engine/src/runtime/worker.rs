//! One topology's worker: reads its input partitions from the stored
//! positions, folds batches and commits them to the projection store.

use super::commit_signal::CommitSignal;
use super::config::{StartFrom, TopologyConfig};
use super::fold::{self, HaltError};
use super::status::{PartitionStatus, StatusHandle, TopologyState};
use crate::log::{Log, LogError, StoredRecord, TopicConfig, now_ms};
use crate::metrics as m;
use crate::processor::Processor;
use crate::projection::TableSpec;
use crate::store::{OutboxRecord, ProjectionStore, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Halted(#[from] HaltError),
    #[error(
        "source topic `{topic}` of topology `{topology}` does not exist (hint: `conductor topic create {topic} --partitions N`)"
    )]
    MissingSource { topology: String, topic: String },
    /// The store's generation was made under another output generation
    /// (see `Processor::output_generation`): folding on would mix the two.
    #[error(
        "topology `{topology}` holds the output of `{stored}`, this configuration makes `{configured}`: folding on would mix the two (hint: a change like this is a migration: `conductor replay rebuild --topology {topology}` with the new configuration, `replay verify`, `replay swap`, then run the new configuration; or run the configuration the projection was built with)"
    )]
    GenerationMismatch {
        topology: String,
        stored: String,
        configured: String,
    },
}

/// What the worker does about a batch that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing was committed and the same batch may succeed later: retry it
    /// with backoff (a dependency or the store is down).
    Retry,
    /// The topology was paused or swapped meanwhile: reload and fold again.
    Refold,
    /// Retrying gives the same answer: stop and tell a human.
    Halt,
}

impl RuntimeError {
    /// Retry, refold or halt — decided on the error's kind, never its text.
    pub fn disposition(&self) -> Disposition {
        use crate::log::LogErrorKind;
        use crate::store::StoreErrorKind;
        match self {
            RuntimeError::Halted(h) if h.is_external() => Disposition::Retry,
            RuntimeError::Halted(_)
            | RuntimeError::MissingSource { .. }
            | RuntimeError::GenerationMismatch { .. } => Disposition::Halt,
            RuntimeError::Store(e) => match e.kind() {
                StoreErrorKind::Retryable => Disposition::Retry,
                StoreErrorKind::Fenced => Disposition::Refold,
                StoreErrorKind::Permanent => Disposition::Halt,
            },
            RuntimeError::Log(e) => match e.kind() {
                LogErrorKind::Transient | LogErrorKind::Fenced => Disposition::Retry,
                LogErrorKind::User | LogErrorKind::Corruption | LogErrorKind::Fatal => {
                    Disposition::Halt
                }
            },
        }
    }

    /// The `kind` label of `conductor_batch_errors_total`.
    pub fn kind_label(&self) -> &'static str {
        use crate::log::LogErrorKind;
        use crate::store::StoreErrorKind;
        match self {
            RuntimeError::Halted(h) if h.is_external() => "external",
            RuntimeError::Halted(_) => "processor_internal",
            RuntimeError::MissingSource { .. } => "missing_source",
            RuntimeError::GenerationMismatch { .. } => "generation_mismatch",
            RuntimeError::Store(e) => match e.kind() {
                StoreErrorKind::Retryable => "store_retryable",
                StoreErrorKind::Fenced => "store_fenced",
                StoreErrorKind::Permanent => "store_permanent",
            },
            RuntimeError::Log(e) => match e.kind() {
                LogErrorKind::Transient => "log_transient",
                LogErrorKind::Fenced => "log_fenced",
                LogErrorKind::User => "log_user",
                LogErrorKind::Corruption => "log_corruption",
                LogErrorKind::Fatal => "log_fatal",
            },
        }
    }

    /// What the topology waits on while it retries (`topology status`):
    /// the processor's dependency, the store's backend (`postgres`,
    /// `sqlite`) or the log (`kafka`, `the file log`).
    fn waiting_on(&self, store: &dyn ProjectionStore, log: &dyn Log) -> String {
        match self {
            RuntimeError::Halted(h) => h
                .error
                .dependency
                .clone()
                .unwrap_or_else(|| format!("processor `{}`", h.processor)),
            RuntimeError::Store(_) => store.backend().to_string(),
            _ => log_dependency(log),
        }
    }
}

/// The log as a dependency in `waiting_on`: `kafka`, `the file log`.
pub fn log_dependency(log: &dyn Log) -> String {
    match log.backend() {
        "kafka" => "kafka".into(),
        other => format!("the {other} log"),
    }
}

/// A batch whose commit runs in the background.
struct InFlight {
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
    started: Instant,
    records: usize,
    events: usize,
    dead: usize,
    dead_by_kind: BTreeMap<String, usize>,
    changes: usize,
    oldest_append_ms: i64,
    new_positions: Vec<((String, i32), i64)>,
    /// A copy of the outbox records, for an attached relay.
    handoff: Option<Vec<OutboxRecord>>,
}

/// Partitions of a graph topic (`ig.graph.<topology>`) created by the worker.
pub const GRAPH_TOPIC_PARTITIONS: i32 = 3;

/// Keys whose version the worker remembers before it starts over.
const VERSION_CACHE_MAX: usize = 2_000_000;

/// How a worker runs: the live defaults, or a bounded replay.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Stop reading each partition at this offset (exclusive). Partitions
    /// not listed are read to their end. `None`: follow the log forever.
    pub end: Option<BTreeMap<(String, i32), i64>>,
    /// Start from these positions on partitions with no stored position
    /// (instead of the topology's `sources.start`).
    pub start: Option<BTreeMap<(String, i32), i64>>,
    /// Write the outbox (changefeed, DLQ, emitted events). A rebuild into a
    /// shadow turns this off: its side effects already happened live.
    pub side_effects: bool,
    /// With side effects off, still keep the processor's derived events
    /// (every outbox record but the changefeed and the DLQ) in the outbox:
    /// a migration's shadow, whose events live never emitted. Nobody
    /// relays a shadow's outbox; a swap moves it into live's.
    pub emit_outputs: bool,
    /// The store holds no rows of these tables yet, so a key missing from
    /// the version cache has no stored version and needs no look-up (a
    /// rebuild into a fresh shadow). Forgotten as soon as the cache is cleared.
    pub store_starts_empty: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            end: None,
            start: None,
            side_effects: true,
            emit_outputs: false,
            store_starts_empty: false,
        }
    }
}

/// What one [`Worker::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepOutcome {
    pub records: usize,
    pub changes: usize,
    pub dead: usize,
    /// Where the batch's time went (for soak reports and tuning).
    pub fold_micros: u64,
    pub versions_micros: u64,
    pub commit_micros: u64,
}

pub struct Worker {
    pub config: TopologyConfig,
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
    processor: Box<dyn Processor>,
    tables: Vec<TableSpec>,
    /// (topic, partition) → next offset after the last *committed* batch.
    positions: BTreeMap<(String, i32), i64>,
    /// (topic, partition) → next offset to read (ahead of `positions` while
    /// a commit is in flight).
    read_positions: BTreeMap<(String, i32), i64>,
    inflight: Option<InFlight>,
    /// When a stateful processor's next snapshot is due.
    cadence: super::state::SnapshotCadence,
    /// The processor's state may be ahead of the store (a batch failed after
    /// its fold): restore it before the next fold.
    restore_pending: bool,
    /// A commit failed and reading the store back failed too (the store is
    /// away): positions, outbox seq and control must be read again before
    /// the next batch — the failed commit's outcome is unknown until then.
    reload_pending: bool,
    /// How the last restore of the processor's state went.
    pub restored: super::state::Restored,
    next_seq: i64,
    /// The control epoch batches are folded under (see `StoreCommit::epoch`).
    epoch: i64,
    paused: bool,
    options: WorkerOptions,
    /// Every stored key of the topology's tables is in `versions`.
    versions_complete: bool,
    /// Stored row versions this worker knows, so most batches need no
    /// look-up query. Valid because a topology's worker is the only writer of
    /// its tables (a second writer fails on the outbox sequence); cleared
    /// after any failed commit and when it grows past `VERSION_CACHE_MAX`.
    versions: HashMap<(&'static str, Vec<String>), i64>,
    pub status: StatusHandle,
    /// Signalled after each commit so the relay picks the outbox up at once
    /// (and takes the committed records from it rather than the store).
    pub committed: Arc<CommitSignal>,
    /// The store's output generation differs from the processor's (found
    /// on start or after a swap): no batch may be folded.
    generation_mismatch: Option<String>,
}

/// Creates `topic` unless it exists.
pub async fn ensure_topic(log: &dyn Log, topic: &str, partitions: i32) -> Result<(), LogError> {
    match log
        .create_topic(topic, &TopicConfig::with_partitions(partitions))
        .await
    {
        Ok(()) | Err(LogError::TopicExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Worker {
    /// Prepares a worker: migrations, output topics, stored positions.
    pub async fn start(
        config: TopologyConfig,
        processor: Box<dyn Processor>,
        log: Arc<dyn Log>,
        store: Arc<dyn ProjectionStore>,
    ) -> Result<Self, RuntimeError> {
        Self::start_with(config, processor, log, store, WorkerOptions::default()).await
    }

    /// [`start`](Self::start) with explicit options (replays use this).
    pub async fn start_with(
        config: TopologyConfig,
        processor: Box<dyn Processor>,
        log: Arc<dyn Log>,
        store: Arc<dyn ProjectionStore>,
        options: WorkerOptions,
    ) -> Result<Self, RuntimeError> {
        let tables = processor.tables();
        store.migrate(&tables).await?;
        if config.changefeed.enabled && options.side_effects {
            ensure_topic(
                log.as_ref(),
                &config.changefeed_topic(),
                config.changefeed.partitions,
            )
            .await?;
        }
        if options.side_effects {
            ensure_topic(log.as_ref(), &config.dlq_topic(), 1).await?;
        }
        if options.side_effects {
            for (topic, partitions) in processor.output_topics() {
                ensure_topic(log.as_ref(), &topic, partitions).await?;
            }
        }
        if let Some(graph) = processor.graph() {
            for table in [graph.nodes_table, graph.edges_table] {
                if !tables.iter().any(|t| t.name == table) {
                    return Err(RuntimeError::Store(StoreError::permanent(
                        format!("starting topology `{}`", config.name),
                        format!(
                            "processor `{}` declares graph table `{table}` but does not list it in its tables (add GraphSpec::tables())",
                            processor.name()
                        ),
                    )));
                }
            }
            if options.side_effects {
                // Created up front so graph sinks can follow it from the start.
                ensure_topic(log.as_ref(), &config.graph_topic(), GRAPH_TOPIC_PARTITIONS).await?;
            }
        }
        let stored = store.load_offsets(&config.name).await?;
        let mut positions = BTreeMap::new();
        for topic in &config.sources.topics {
            let description = match log.describe_topic(topic).await {
                Ok(d) => d,
                Err(LogError::UnknownTopic(_)) if config.sources.create_partitions.is_some() => {
                    let partitions = config.sources.create_partitions.unwrap_or(1);
                    ensure_topic(log.as_ref(), topic, partitions).await?;
                    log.describe_topic(topic).await?
                }
                Err(LogError::UnknownTopic(_)) => {
                    return Err(RuntimeError::MissingSource {
                        topology: config.name.clone(),
                        topic: topic.clone(),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            for p in description.partitions {
                let key = (topic.clone(), p.partition);
                let start = match (
                    options.start.as_ref().and_then(|s| s.get(&key)),
                    config.sources.start,
                ) {
                    (Some(o), _) => *o,
                    (None, StartFrom::Earliest) => p.low_watermark,
                    (None, StartFrom::Latest) => p.high_watermark,
                };
                let pos = stored
                    .get(&(topic.clone(), p.partition))
                    .copied()
                    .unwrap_or(start);
                positions.insert((topic.clone(), p.partition), pos);
            }
        }
        // Empty tables (a new topology, a rebuild, a reset projection): every
        // stored version is known — there is none — so no batch needs a
        // version look-up until the cache is cleared.
        let mut store_empty = options.store_starts_empty;
        if !store_empty {
            store_empty = true;
            for t in &tables {
                if !store.table_is_empty(t).await? {
                    store_empty = false;
                    break;
                }
            }
        }
        let next_seq = store.next_outbox_seq(&config.name).await?;
        let control = store.control(&config.name).await?;
        let status = StatusHandle::new(&config.name, processor.name());
        let cadence = super::state::SnapshotCadence::new(&config);
        let mut worker = Worker {
            epoch: control.epoch,
            paused: control.paused,
            versions_complete: store_empty,
            options,
            config,
            log,
            store,
            processor,
            tables,
            read_positions: positions.clone(),
            positions,
            inflight: None,
            cadence,
            restore_pending: false,
            reload_pending: false,
            restored: Default::default(),
            next_seq,
            versions: HashMap::new(),
            status,
            committed: Arc::new(CommitSignal::new()),
            generation_mismatch: None,
        };
        worker.claim_output_generation().await?;
        if let Some(stored) = worker.generation_mismatch.take() {
            return Err(worker.mismatch(stored));
        }
        worker.restore_state().await?;
        Ok(worker)
    }

    /// Checks the store's output generation against the processor's, and
    /// records the processor's in a store that has none yet (a new
    /// topology, a fresh shadow, a store from before generations).
    async fn claim_output_generation(&mut self) -> Result<(), StoreError> {
        let Some(configured) = self.processor.output_generation() else {
            return Ok(());
        };
        let topology = self.config.name.clone();
        match self
            .store
            .load_state(&topology, crate::store::SCOPE_OUTPUT_GENERATION)
            .await?
        {
            Some(s) => {
                let stored = String::from_utf8_lossy(&s.bytes).into_owned();
                self.generation_mismatch = (stored != configured).then_some(stored);
            }
            None => {
                // Not fenced (`epoch: None`): a paused topology is claimed too.
                let claim = crate::store::StoreCommit {
                    topology,
                    state: Some(crate::store::StateSnapshot {
                        scope: crate::store::SCOPE_OUTPUT_GENERATION.into(),
                        format_version: 1,
                        bytes: configured.into_bytes(),
                        positions: BTreeMap::new(),
                    }),
                    ..Default::default()
                };
                self.store.commit(claim).await?;
                self.generation_mismatch = None;
            }
        }
        Ok(())
    }

    fn mismatch(&self, stored: String) -> RuntimeError {
        RuntimeError::GenerationMismatch {
            topology: self.config.name.clone(),
            stored,
            configured: self.processor.output_generation().unwrap_or_default(),
        }
    }

    /// Brings a stateful processor's state to the stored positions (the
    /// snapshot, then a warm-up fold of what came after it).
    async fn restore_state(&mut self) -> Result<(), RuntimeError> {
        self.restored = super::state::restore(
            self.processor.as_mut(),
            &self.config,
            self.log.as_ref(),
            self.store.as_ref(),
        )
        .await?;
        self.restore_pending = false;
        Ok(())
    }

    /// Whether the processor keeps state the runtime must restore.
    fn is_stateful(&mut self) -> bool {
        self.processor.state().is_some()
    }

    /// Next offset after the last committed batch, per input partition.
    pub fn positions(&self) -> &BTreeMap<(String, i32), i64> {
        &self.positions
    }

    pub fn log(&self) -> &Arc<dyn Log> {
        &self.log
    }

    pub fn store(&self) -> &Arc<dyn ProjectionStore> {
        &self.store
    }

    /// Whether every partition has been read up to `options.end` (never
    /// true without an end).
    pub fn reached_end(&self) -> bool {
        let Some(end) = &self.options.end else {
            return false;
        };
        self.read_positions
            .iter()
            .all(|(k, pos)| end.get(k).is_some_and(|e| pos >= e))
    }

    /// Records left to read before `options.end`, over all partitions.
    pub fn remaining(&self) -> Option<i64> {
        let end = self.options.end.as_ref()?;
        Some(
            self.read_positions
                .iter()
                .map(|(k, pos)| end.get(k).map_or(0, |e| (e - pos).max(0)))
                .sum(),
        )
    }

    /// Reads what is available (up to the batch limits) without waiting.
    async fn gather(
        &self,
        batch: &mut Vec<StoredRecord>,
        bytes: &mut usize,
    ) -> Result<(), LogError> {
        let max = self.config.batch.max_events;
        // A fair share per partition per pass, so one busy partition can't starve the others.
        let share = (max / self.read_positions.len().max(1)).max(1);
        for ((topic, partition), pos) in &self.read_positions {
            if batch.len() >= max || *bytes >= self.config.batch.max_bytes {
                break;
            }
            // Records already gathered from this partition in this batch.
            let from = batch
                .iter()
                .rev()
                .find(|r| &r.topic == topic && r.partition == *partition)
                .map_or(*pos, |r| r.offset + 1);
            let mut want = share.min(max - batch.len());
            if let Some(end) = self.options.end.as_ref() {
                let end = end
                    .get(&(topic.clone(), *partition))
                    .copied()
                    .unwrap_or(i64::MAX);
                want = want.min((end - from).max(0) as usize);
                if want == 0 {
                    continue;
                }
            }
            let records = self.log.read(topic, *partition, from, want).await?;
            for r in records {
                *bytes += r.record.payload_len();
                batch.push(r);
                if *bytes >= self.config.batch.max_bytes {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Folds one batch — whatever is available now, topped up for up to
    /// `linger_ms` while below `max_events` — and starts its commit once the
    /// previous one is done. Returns what it did; `records == 0` means there
    /// was nothing to read and nothing is left in flight.
    pub async fn step(&mut self) -> Result<StepOutcome, RuntimeError> {
        if self.reload_pending {
            self.reload_from_store().await?;
            self.reload_pending = false;
            if self.paused {
                // Paused meanwhile (the control row says so): fold nothing.
                return Ok(StepOutcome::default());
            }
        }
        if self.restore_pending {
            // Settle what is in flight first: the state must match the store.
            self.flush().await?;
            self.restore_state().await?;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        self.gather(&mut batch, &mut bytes).await?;
        if batch.is_empty() {
            // Idle: finish the commit in flight, so an idle worker has
            // everything it read committed (and the relay can see it).
            self.flush().await?;
            return Ok(StepOutcome::default());
        }
        let linger = Duration::from_millis(self.config.batch.linger_ms);
        let started = Instant::now();
        while batch.len() < self.config.batch.max_events
            && bytes < self.config.batch.max_bytes
            && started.elapsed() < linger
        {
            tokio::time::sleep(Duration::from_millis(2).min(linger)).await;
            self.gather(&mut batch, &mut bytes).await?;
        }
        self.commit_batch(batch).await
    }

    /// Folds a batch and hands its commit to a background task, after the
    /// previous batch's commit has finished. So batch N+1 is decoded and
    /// folded while batch N is being written — commits themselves stay
    /// strictly one after the other, which the outbox sequence requires.
    ///
    /// Invariant: `read_positions`, `next_seq` and `versions` describe the
    /// store as it will be once every commit handed out so far succeeds; if
    /// one fails, they are reloaded from the store and the folded-but-not-
    /// committed batch is dropped (it is read again).
    async fn commit_batch(
        &mut self,
        batch: Vec<StoredRecord>,
    ) -> Result<StepOutcome, RuntimeError> {
        let records = batch.len();
        let oldest_append_ms = batch
            .iter()
            .map(|r| r.record.timestamp_ms)
            .min()
            .unwrap_or_else(now_ms);
        if let Some(stored) = self.generation_mismatch.clone() {
            return Err(self.mismatch(stored));
        }
        let t_fold = Instant::now();
        let decoded = fold::decode_all(&batch);
        if self.options.side_effects {
            self.prepare(&batch, &decoded).await?;
        }
        let folded = fold::fold_decoded(self.processor.as_mut(), &self.config, batch, decoded)?;
        let fold_micros = t_fold.elapsed().as_micros() as u64;
        let t_versions = Instant::now();
        let (events, dead) = (folded.events, folded.dead);
        let dead_by_kind = if dead > 0 {
            folded.dead_by_kind()
        } else {
            BTreeMap::new()
        };
        let mut versions = HashMap::new();
        for (table, keys) in folded.keys_by_table() {
            let spec = self
                .tables
                .iter()
                .find(|t| t.name == table)
                .ok_or_else(|| StoreError::UnknownTable(table.to_string()))?;
            let mut missing = Vec::new();
            for k in keys {
                match self.versions.get(&(table, k.clone())) {
                    Some(v) => {
                        versions.insert((table, k), *v);
                    }
                    None => missing.push(k),
                }
            }
            // Keys missing from the cache were not touched by a commit in
            // flight (those are all cached), so the store's answer is current.
            if !missing.is_empty() && !self.versions_complete {
                for (k, v) in self.store.current_versions(spec, &missing).await? {
                    versions.insert((table, k), v);
                }
            }
        }
        let versions_micros = t_versions.elapsed().as_micros() as u64;
        let t_resolve = Instant::now();
        let (mut commit, changes) =
            folded.resolve(&self.config, &self.tables, versions, self.next_seq);
        commit.epoch = Some(self.epoch);
        if !self.options.side_effects {
            if self.options.emit_outputs {
                let (changefeed, dlq) = (self.config.changefeed_topic(), self.config.dlq_topic());
                commit
                    .outbox
                    .retain(|r| r.topic != changefeed && r.topic != dlq);
                // Dense again: the store checks the seqs follow on.
                for (i, r) in commit.outbox.iter_mut().enumerate() {
                    r.seq = self.next_seq + i as i64;
                }
            } else {
                commit.outbox.clear();
            }
        }
        let fold_micros = fold_micros + t_resolve.elapsed().as_micros() as u64;
        let new_positions: Vec<((String, i32), i64)> = commit
            .offsets
            .iter()
            .map(|p| ((p.topic.clone(), p.partition), p.next_offset))
            .collect();
        if self.versions.len() + commit.upserts.len() > VERSION_CACHE_MAX {
            self.versions.clear();
            self.versions_complete = false;
        }
        self.versions.extend(
            commit
                .upserts
                .iter()
                .map(|u| ((u.table, u.key.clone()), u.version)),
        );
        self.next_seq += commit.outbox.len() as i64;
        self.read_positions.extend(new_positions.iter().cloned());
        let snapshot = self.cadence.due();
        if snapshot {
            commit.state = super::state::take(self.processor.as_mut(), &self.read_positions);
        }
        self.cadence.batch(snapshot);
        let handoff = self
            .committed
            .relay_attached()
            .then(|| commit.outbox.clone());

        // Wait for the previous commit, then start this one.
        let t_wait = Instant::now();
        self.flush().await?;
        let waited_micros = t_wait.elapsed().as_micros() as u64;
        let store = self.store.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move { store.commit(commit).await });
        self.inflight = Some(InFlight {
            task,
            started,
            records,
            events,
            dead,
            dead_by_kind,
            changes,
            oldest_append_ms,
            new_positions,
            handoff,
        });
        Ok(StepOutcome {
            records,
            changes,
            dead,
            fold_micros,
            versions_micros,
            commit_micros: waited_micros,
        })
    }

    /// Runs the processor's `prepare` hook (its I/O: an enrichment stage's
    /// calls) on a live batch's decoded events.
    async fn prepare(
        &mut self,
        batch: &[StoredRecord],
        decoded: &[Result<conductor_schemas::Event, conductor_schemas::SchemaError>],
    ) -> Result<(), HaltError> {
        let events: Vec<&conductor_schemas::Event> =
            decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let Some(prepared) = self.processor.prepare(&events) else {
            return Ok(());
        };
        prepared.await.map_err(|error| HaltError {
            processor: self.config.processor.clone(),
            at: crate::log::SourcePosition {
                topic: first.topic.clone(),
                partition: first.partition,
                offset: first.offset,
            },
            error,
        })
    }

    /// Waits for the commit in flight, if any, and books its result.
    pub async fn flush(&mut self) -> Result<(), RuntimeError> {
        let Some(f) = self.inflight.take() else {
            return Ok(());
        };
        let result = match f.task.await {
            Ok(r) => r,
            Err(join) => Err(StoreError::Unavailable {
                operation: "commit".into(),
                detail: format!("commit task failed: {join}"),
                source: None,
            }),
        };
        if let Err(e) = result {
            // The outcome may be unknown (a commit can succeed and its reply
            // be lost): forget what we believed and start over from what the
            // store says, so the retry neither repeats nor skips anything.
            self.versions.clear();
            self.versions_complete = false;
            if let Err(reload) = self.reload_from_store().await {
                // Read again before the next batch, never assumed.
                self.reload_pending = true;
                tracing::debug!(topology = %self.config.name, error = %reload, "could not reload positions after a failed commit; will before the next batch");
            }
            return Err(e.into());
        }
        let commit_secs = f.started.elapsed().as_secs_f64();
        self.positions.extend(f.new_positions);
        self.committed.committed(f.handoff);

        let labels = [("topology", self.config.name.clone())];
        metrics::counter!(m::EVENTS_PROCESSED_TOTAL, &labels).increment(f.events as u64);
        for (kind, n) in &f.dead_by_kind {
            let labels = [
                ("topology", self.config.name.clone()),
                ("kind", kind.clone()),
            ];
            metrics::counter!(m::DLQ_EVENTS_TOTAL, &labels).increment(*n as u64);
        }
        metrics::counter!(m::CHANGES_TOTAL, &labels).increment(f.changes as u64);
        metrics::counter!(m::BATCHES_COMMITTED_TOTAL, &labels).increment(1);
        metrics::histogram!(m::BATCH_SIZE_EVENTS, &labels).record(f.records as f64);
        metrics::histogram!(m::COMMIT_DURATION_SECONDS, &labels).record(commit_secs);
        metrics::histogram!(m::PROCESSING_LATENCY_SECONDS, &labels)
            .record((now_ms() - f.oldest_append_ms).max(0) as f64 / 1000.0);
        self.status.update(|s| {
            s.events_processed += f.events as u64;
            s.dlq_events += f.dead as u64;
            s.changes += f.changes as u64;
            s.batches += 1;
            s.last_commit_ms = Some(now_ms());
        });
        Ok(())
    }

    /// Re-reads positions, the outbox seq and the control row from the store.
    async fn reload_from_store(&mut self) -> Result<(), StoreError> {
        let control = self.store.control(&self.config.name).await?;
        self.epoch = control.epoch;
        self.paused = control.paused;
        let stored = self.store.load_offsets(&self.config.name).await?;
        for (key, pos) in self.positions.iter_mut() {
            if let Some(p) = stored.get(key) {
                *pos = *p;
            }
        }
        self.read_positions = self.positions.clone();
        self.next_seq = self.store.next_outbox_seq(&self.config.name).await?;
        // A swap may have brought in a generation of another configuration.
        self.claim_output_generation().await?;
        Ok(())
    }

    /// Drops every cached belief about the store and reads it again.
    async fn forget_and_reload(&mut self) -> Result<(), StoreError> {
        self.versions.clear();
        self.versions_complete = false;
        self.restore_pending = self.is_stateful();
        let reloaded = self.reload_from_store().await;
        self.reload_pending = reloaded.is_err();
        reloaded
    }

    /// Stores a snapshot of the state at the committed positions if batches
    /// were committed since the last one, so a restart folds nothing again.
    /// Best effort: without it a restart warms up from the last snapshot.
    async fn snapshot_on_drain(&mut self) {
        if self.cadence.batches_since() == 0 || self.restore_pending {
            return;
        }
        let Some(state) = super::state::take(self.processor.as_mut(), &self.positions) else {
            return;
        };
        let commit = crate::store::StoreCommit {
            topology: self.config.name.clone(),
            epoch: Some(self.epoch),
            state: Some(state),
            ..Default::default()
        };
        match self.store.commit(commit).await {
            Ok(()) => self.cadence.batch(true),
            Err(error) => {
                tracing::warn!(topology = %self.config.name, error = %error, "could not snapshot the state on drain")
            }
        }
    }

    fn show_control_state(&self) {
        let paused = self.paused;
        self.status.update(|s| {
            s.state = if paused {
                TopologyState::Paused
            } else {
                TopologyState::Running
            };
            s.error = None;
        });
    }

    /// Refreshes lag figures (status and the `conductor_consumer_lag_records` gauge).
    pub async fn refresh_lag(&self) -> Result<(), LogError> {
        let mut parts = Vec::with_capacity(self.positions.len());
        for ((topic, partition), pos) in &self.positions {
            let (_, high) = self.log.watermarks(topic, *partition).await?;
            let lag = (high - pos).max(0);
            metrics::gauge!(m::CONSUMER_LAG_RECORDS, "topology" => self.config.name.clone(), "topic" => topic.clone(), "partition" => partition.to_string())
                .set(lag as f64);
            parts.push(PartitionStatus {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *pos,
                high_watermark: high,
                lag,
            });
        }
        self.status.update(|s| s.partitions = parts);
        Ok(())
    }

    /// Reads the store's control row (pause, resume, swap) when it is due;
    /// a changed epoch drops what the worker believed about the store.
    async fn check_control(&mut self, last: &mut Instant) -> Result<(), RuntimeError> {
        if last.elapsed() < Duration::from_millis(500) {
            return Ok(());
        }
        *last = Instant::now();
        let control = self.store.control(&self.config.name).await?;
        if control.epoch != self.epoch {
            // Paused, resumed or swapped from elsewhere: what this worker
            // cached may no longer describe the store.
            if let Err(e) = self.flush().await {
                tracing::debug!(topology = %self.config.name, error = %e, "commit in flight refused by the new control epoch");
            }
            self.forget_and_reload().await?;
            tracing::info!(topology = %self.config.name, paused = self.paused, epoch = self.epoch, "topology control changed");
            self.show_control_state();
        }
        Ok(())
    }

    /// Refreshes the lag figures once a second; a failure is logged when it
    /// starts, not every second while the log is away.
    async fn refresh_lag_when_due(&self, last: &mut Instant, failing: &mut bool) {
        if last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = Instant::now();
        match self.refresh_lag().await {
            Ok(()) => *failing = false,
            Err(error) if !*failing => {
                *failing = true;
                tracing::warn!(topology = %self.config.name, error = %error, "could not refresh lag");
            }
            Err(error) => {
                tracing::debug!(topology = %self.config.name, error = %error, "could not refresh lag")
            }
        }
    }

    /// Runs until `shutdown` turns true: batches while there is input, obeys
    /// pause/resume from the store's control row, and drains on shutdown
    /// (the batch in hand is committed; the relay empties the outbox).
    /// Whatever fails — a batch, a commit, reading the control row — is
    /// decided by the error's kind: retried with backoff while the store, the
    /// log or a dependency is away (`topology status` shows `waiting_on`),
    /// refolded after a pause or swap, or the end of the topology.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), RuntimeError> {
        let idle = Duration::from_millis(self.config.batch.linger_ms.clamp(5, 200));
        let mut last_control = Instant::now() - Duration::from_secs(1);
        let mut last_lag = Instant::now() - Duration::from_secs(1);
        let mut lag_failing = false;
        let mut backoff = super::backoff::Backoff::default();
        self.show_control_state();
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.refresh_lag_when_due(&mut last_lag, &mut lag_failing)
                .await;
            let result = match self.check_control(&mut last_control).await {
                Ok(()) if self.paused => Ok(StepOutcome::default()),
                Ok(()) => self.step().await,
                Err(e) => Err(e),
            };
            let outcome = match result {
                Ok(o) => {
                    if backoff.reset() {
                        tracing::info!(topology = %self.config.name, "batch succeeded after retries");
                        self.status.update(|s| {
                            s.error = None;
                            s.waiting_on = None;
                        });
                    }
                    o
                }
                Err(e) => {
                    // The fold may have moved the state past the store.
                    self.restore_pending = self.is_stateful();
                    let labels = [
                        ("topology", self.config.name.clone()),
                        ("kind", e.kind_label().to_string()),
                    ];
                    metrics::counter!(m::BATCH_ERRORS_TOTAL, &labels).increment(1);
                    match e.disposition() {
                        Disposition::Halt => {
                            // Batches before the failing one are good: keep them.
                            let flushed = self.flush().await;
                            tracing::error!(topology = %self.config.name, error = %e, kind = e.kind_label(), "topology halted");
                            if let Err(flush) = &flushed {
                                tracing::error!(topology = %self.config.name, error = %flush, "the batch before the halting one did not commit either");
                            }
                            self.status.update(|s| {
                                s.state = TopologyState::Failed;
                                s.error = Some(match &flushed {
                                    Ok(()) => e.to_string(),
                                    Err(flush) => format!(
                                        "{e} (and the batch before it did not commit: {flush})"
                                    ),
                                });
                                s.waiting_on = None;
                            });
                            return Err(e);
                        }
                        Disposition::Refold => {
                            // Paused or swapped while the batch was folded; the
                            // worker has reloaded and folds it again if resumed.
                            tracing::info!(topology = %self.config.name, reason = %e, "batch fenced off");
                            self.show_control_state();
                            continue;
                        }
                        Disposition::Retry => {
                            // Nothing of this batch was committed (a fold
                            // error comes before any position moves; a failed
                            // commit is resolved by reading the store back
                            // before the next batch): retry it.
                            let delay = backoff.next_delay();
                            let waiting_on = e.waiting_on(self.store.as_ref(), self.log.as_ref());
                            tracing::warn!(topology = %self.config.name, error = %e, kind = e.kind_label(), waiting_on = %waiting_on, retry_in_ms = delay.as_millis() as u64, "batch failed; retrying");
                            self.status.update(|s| {
                                s.error = Some(e.to_string());
                                s.waiting_on = Some(waiting_on);
                            });
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                _ = shutdown.changed() => {}
                            }
                            continue;
                        }
                    }
                }
            };
            if outcome.records == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        self.drain().await
    }

    /// Stops: commits the batch in flight and, for a stateful processor,
    /// stores a snapshot at the committed positions. `run` ends with it;
    /// callers that step the worker themselves call it directly.
    pub async fn drain(mut self) -> Result<(), RuntimeError> {
        self.flush().await?;
        self.snapshot_on_drain().await;
        self.status.update(|s| s.state = TopologyState::Draining);
        Ok(())
    }
}
