//! The processor contract: a processor is a deterministic fold.
//!
//! Given one decoded input event (and whatever in-memory state it keeps), a
//! processor returns [`Effect`]s — projection mutations and events to emit —
//! and nothing else: it never writes to a store or a topic itself. The
//! runtime applies the effects of a whole batch in one transaction together
//! with the input positions, which is what makes the effect exactly-once.
//!
//! A processor must:
//! 1. be deterministic: the same events in the same order give the same effects
//!    (no clocks, no randomness, no I/O) — replays and crash recovery rely on it;
//! 2. key every mutation by a natural key and carry a version, so that the
//!    version guard makes a replayed or older event change nothing;
//! 3. be rebuildable: any in-memory state is a function of the events it has seen
//!    (the runtime rebuilds it by replay; see `rebuild_state`);
//! 4. report bad input as [`ProcessorError::invalid_input`] (the event goes to the
//!    DLQ and the partition moves on), a dependency that is down as
//!    [`ProcessorError::external`] (the batch is retried with backoff, never
//!    DLQ'd), and only bugs or broken invariants as [`ProcessorError::internal`]
//!    (the topology halts per its error policy).
//!
//! `crate::testing::check_processor_contract` checks 1 and 2 for any processor.

pub mod spec;

pub use spec::{ProcessorSpec, RegisteredProcessor};

use crate::graph::{GraphMutation, GraphSpec};
use crate::projection::RowUpsert;
use conductor_schemas::Event;
use futures::future::BoxFuture;

/// What a processor asks the runtime to do for one input event.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Upsert a projection row, guarded by its version.
    Upsert(RowUpsert),
    /// Append an event to a derived topic (exactly once, in order per key).
    Emit(Box<EmitEvent>),
    /// Change the processor's graph (see [`crate::graph`]): a version-guarded
    /// row of its graph tables and, when the row changes, a record on its
    /// graph topic for the graph sinks. Needs [`Processor::graph`].
    Graph(Box<GraphMutation>),
}

/// An event to append to a derived topic.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitEvent {
    pub topic: String,
    pub event: Event,
    /// The record key; `None`: `tenant/subject`, as `produce` keys events.
    /// A repartition keys by tenant, so a tenant's events meet in one partition.
    pub key: Option<String>,
}

/// Why a processor refused an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProcessorError {
    pub kind: ProcessorErrorKind,
    pub message: String,
    /// For [`ProcessorErrorKind::External`]: what the processor waits on
    /// (`embedder http://127.0.0.1:8080`), shown by `topology status`.
    pub dependency: Option<String>,
}

/// Who is at fault, which decides DLQ versus halt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessorErrorKind {
    /// The event is valid by schema but not acceptable here (DLQ it).
    InvalidInput,
    /// A bug or a broken invariant (halt, or DLQ under `on_error = "dlq"`).
    Internal,
    /// A dependency is down or refusing (an embedder, a rate limit): the
    /// event is fine and so is the processor, so the batch is retried with
    /// backoff, never sent to the DLQ and never halted on.
    External,
}

impl ProcessorErrorKind {
    /// The DLQ header value (`invalid_input`, `internal`).
    pub fn dlq_kind(self) -> String {
        crate::runtime::fold::dlq_kind(&self)
    }
}

impl ProcessorError {
    pub fn invalid_input(message: impl Into<String>) -> Self {
        ProcessorError {
            kind: ProcessorErrorKind::InvalidInput,
            message: message.into(),
            dependency: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ProcessorError {
            kind: ProcessorErrorKind::Internal,
            message: message.into(),
            dependency: None,
        }
    }

    /// `dependency` names what is down (`embedder http://…`), for the status.
    pub fn external(dependency: impl Into<String>, message: impl Into<String>) -> Self {
        ProcessorError {
            kind: ProcessorErrorKind::External,
            message: message.into(),
            dependency: Some(dependency.into()),
        }
    }
}

/// In-memory state of a stateful processor (a blocking index, counters),
/// which the runtime snapshots with the batches and restores on start.
///
/// The state must be a function of the events folded so far and
/// *partition-local*: what it holds for records of one input partition
/// depends only on that partition's records (a processor that needs all of a
/// tenant's records reads a source keyed by tenant). Then a restore plus a
/// fold of the rest equals a straight fold, whatever the interleaving of
/// partitions — `testing::check_processor_contract` checks it.
pub trait ProcessorState: Send {
    /// Version of the [`snapshot`](Self::snapshot) bytes; bump it when they
    /// change. A snapshot of another version is not read: the runtime warms
    /// up by replay instead.
    fn format_version(&self) -> u32;

    /// The state as bytes (deterministic: equal states, equal bytes).
    fn snapshot(&self) -> Vec<u8>;

    /// What the contract check compares to call two states equal; the
    /// default is the snapshot. A state whose bytes depend on more than its
    /// contents (an HNSW graph's links depend on the insertion history)
    /// gives a digest of the contents instead.
    fn fingerprint(&self) -> Vec<u8> {
        self.snapshot()
    }

    /// Replaces the state with a snapshot of [`format_version`](Self::format_version).
    /// An error (unreadable bytes) makes the runtime warm up instead.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String>;

    /// Empties the state, before a warm-up from the start of the log.
    fn clear(&mut self);
}

/// A deterministic fold from events to effects.
pub trait Processor: Send + Sync {
    /// The registered name (`entities`, `er_candidates`, …).
    fn name(&self) -> &str;

    /// The projection tables this processor writes, created by the store's migrations.
    fn tables(&self) -> Vec<crate::projection::TableSpec>;

    /// Folds one event. The effects are applied only if the whole batch commits.
    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError>;

    /// The processor's in-memory state, if it keeps any; `None` (the
    /// default) is a stateless processor, which the runtime never snapshots.
    fn state(&mut self) -> Option<&mut dyn ProcessorState> {
        None
    }

    /// The graph this processor writes with [`Effect::Graph`], if any; its
    /// two tables must be among [`tables`](Self::tables). `None` (the
    /// default): the processor has no graph.
    fn graph(&self) -> Option<GraphSpec> {
        None
    }

    /// Derived topics (name, partitions) the processor emits to and that
    /// must exist before any topology reads them (a repartition topic); the
    /// runtime creates them when the topology starts. The default: none
    /// (others are created on first use).
    fn output_topics(&self) -> Vec<(String, i32)> {
        Vec::new()
    }

    /// What this configuration's rows and derived events are made of, when
    /// two configurations make different ones that must never be mixed in
    /// one projection (the embedding writer: its model id). The runtime
    /// keeps it with the generation: a worker whose value differs from the
    /// stored one refuses to fold, and `conductor replay rebuild` under a
    /// new value is a **migration** — the shadow keeps its derived events
    /// and publishes them when it is swapped in, since live never emitted
    /// them. `None` (the default): the output does not depend on the
    /// configuration that way (a rebuild repeats what live did).
    fn output_generation(&self) -> Option<String> {
        None
    }

    /// Runs before the fold of a live batch, with the batch's decoded
    /// events: the one place a processor may do I/O. An enrichment stage
    /// (`crate::enrich::EnrichStage`) calls its service here for what the
    /// fold will record. It is NOT run on a warm-up or a rebuild (side
    /// effects off), so `process` must not depend on it for anything but
    /// the effects that are dropped there. An `external` error retries the
    /// batch with backoff. `None` (the default): nothing to prepare.
    fn prepare<'a>(
        &'a mut self,
        events: &'a [&'a Event],
    ) -> Option<BoxFuture<'a, Result<(), ProcessorError>>> {
        let _ = events;
        None
    }
}
