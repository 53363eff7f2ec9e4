//! The projection store contract: where a topology's effects land.
//!
//! One [`ProjectionStore::commit`] is ONE database transaction holding
//! - the version-guarded row upserts of a batch,
//! - the outbox records of the batch (change events, DLQ entries, emitted
//!   events) with their sequence numbers, and the topology's next outbox seq,
//! - the input positions consumed (`conductor_offsets`),
//! - now and then, a stateful processor's state snapshot (`conductor_state`),
//!   which therefore always describes exactly the positions stored with it.
//!
//! so a crash either keeps all of a batch or none of it, and on start the
//! runtime resumes from the stored positions. The outbox is then relayed to
//! the log by `runtime::relay` with the log's own atomic commit, which makes
//! every record reach its topic exactly once.
//!
//! Implementations: [`memory::MemoryStore`] (tests, topology test driver) and
//! the SQLite and Postgres stores in `conductor-connectors`. Every one passes
//! `crate::testing::store_contract`.

pub mod memory;

use crate::log::{Header, InputPosition, SourcePosition};
use crate::projection::{RowUpsert, TableSpec};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};

/// A record waiting in the outbox to be appended to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Position in the topology's outbox (dense, from 0, in commit order).
    pub seq: i64,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
    /// The input record this output derives from and its index among that
    /// input's outputs (deterministic: names the output across replays).
    pub source: SourcePosition,
    pub source_index: u32,
}

/// Everything one batch commits.
#[derive(Debug, Clone, Default)]
pub struct StoreCommit {
    pub topology: String,
    /// Final row states, at most one per (table, key), already version-checked
    /// by the runtime; the store still applies them with the version guard.
    pub upserts: Vec<RowUpsert>,
    /// Outbox records with consecutive seqs starting at the stored next seq.
    pub outbox: Vec<OutboxRecord>,
    /// Input positions after this batch.
    pub offsets: Vec<InputPosition>,
    /// The control epoch the batch was folded under. When set, the store
    /// refuses the commit ([`StoreError::Fenced`]) if the topology is paused
    /// or its epoch moved (a pause, resume or generation swap happened since):
    /// after `set_paused` returns, no batch folded before it can land.
    /// `None` skips the check (tools and tests writing directly).
    pub epoch: Option<i64>,
    /// A stateful processor's state after this batch, replacing the stored
    /// one (see [`StateSnapshot`]); `None` leaves the stored one as it is.
    pub state: Option<StateSnapshot>,
}

/// A processor's in-memory state as of a batch boundary, stored in the same
/// transaction as that batch (one row per topology and scope).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateSnapshot {
    /// `*` while one worker owns every partition; `topic/partition` once
    /// state moves with partitions (see the contract v2 design note).
    pub scope: String,
    /// The processor's format version of `bytes`; another version is not read.
    pub format_version: u32,
    pub bytes: Vec<u8>,
    /// Every input position (topic, partition) → next offset the state has
    /// folded, not only the partitions the batch touched.
    pub positions: BTreeMap<(String, i32), i64>,
}

/// The scope of a snapshot covering every partition of a topology.
pub const SCOPE_ALL: &str = "*";

/// The `conductor_state` scope holding a generation's output identity
/// ([`Processor::output_generation`](crate::processor::Processor::output_generation)),
/// as UTF-8 bytes. Kept with the generation's snapshot, it travels with it
/// on a swap.
pub const SCOPE_OUTPUT_GENERATION: &str = "output_generation";

/// Lifecycle control of a topology, kept in the store so that it survives
/// restarts and works across processes (`conductor topology pause` from one
/// shell, the worker in another).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct TopologyControl {
    pub paused: bool,
    /// Grows with every change of control (pause, resume, generation swap).
    /// Workers commit under the epoch they read, which fences them off
    /// when it moves: see [`StoreCommit::epoch`].
    pub epoch: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the {backend} store at {target}: {detail}")]
    Connect {
        backend: &'static str,
        target: String,
        detail: String,
    },
    /// The store refused a statement or its data: retrying the same batch
    /// gives the same answer (a missing table, a constraint, a bad value).
    #[error("database error during {operation}: {detail}")]
    Database {
        operation: String,
        detail: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The store could not be reached or gave up on the transaction (a
    /// dropped connection, a pool timeout, a serialization failure, a COMMIT
    /// whose outcome is unknown): nothing is assumed stored and the same batch
    /// may succeed on retry.
    #[error("store unavailable during {operation}: {detail}")]
    Unavailable {
        operation: String,
        detail: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("unknown table `{0}`: it is not declared by any processor of this store")]
    UnknownTable(String),
    #[error(
        "topology `{topology}` was fenced: {reason}; the batch was not stored and will be folded again"
    )]
    Fenced { topology: String, reason: String },
    #[error(
        "outbox sequence mismatch for topology `{topology}`: commit starts at {got}, store expects {expected}"
    )]
    OutboxSequence {
        topology: String,
        expected: i64,
        got: i64,
    },
}

/// The driver error a [`StoreError`] came from, kept for `source()`.
pub type BoxError = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// Whether retrying can help, which is what the worker decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreErrorKind {
    /// Retry the batch with backoff (connection trouble, unknown outcome).
    Retryable,
    /// Retrying gives the same answer: halt and tell a human.
    Permanent,
    /// Paused or swapped meanwhile: fold the batch again under the new control.
    Fenced,
}

impl StoreError {
    /// A refusal that a retry won't change (see [`StoreError::Database`]).
    pub fn permanent(operation: impl Into<String>, detail: impl Into<String>) -> Self {
        StoreError::Database {
            operation: operation.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Trouble a retry may get past (see [`StoreError::Unavailable`]).
    pub fn unavailable(operation: impl Into<String>, detail: impl Into<String>) -> Self {
        StoreError::Unavailable {
            operation: operation.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Retry, halt or refold: the worker keys off this, never off the text.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Connect { .. }
            | StoreError::Unavailable { .. }
            // A race with another writer of the outbox; reloading the seq fixes it.
            | StoreError::OutboxSequence { .. } => StoreErrorKind::Retryable,
            StoreError::Database { .. } | StoreError::UnknownTable(_) => StoreErrorKind::Permanent,
            StoreError::Fenced { .. } => StoreErrorKind::Fenced,
        }
    }
}

/// Where projections, outbox and offsets live.
#[async_trait]
pub trait ProjectionStore: Send + Sync + 'static {
    /// `memory`, `sqlite`, `postgres`.
    fn backend(&self) -> &'static str;

    /// Creates (if missing) the bookkeeping tables and the given projection tables.
    async fn migrate(&self, tables: &[TableSpec]) -> Result<(), StoreError>;

    /// The stored input positions of a topology: (topic, partition) → next offset.
    async fn load_offsets(
        &self,
        topology: &str,
    ) -> Result<BTreeMap<(String, i32), i64>, StoreError>;

    /// Replaces a topology's input positions (reset-offsets); the caller makes
    /// sure the topology is not running.
    async fn store_offsets(
        &self,
        topology: &str,
        offsets: &[InputPosition],
    ) -> Result<(), StoreError>;

    /// Stored versions of the given keys of `table` (absent keys are missing).
    async fn current_versions(
        &self,
        table: &TableSpec,
        keys: &[Vec<String>],
    ) -> Result<HashMap<Vec<String>, i64>, StoreError>;

    /// The state snapshot of `topology` for `scope`, if one was stored.
    async fn load_state(
        &self,
        topology: &str,
        scope: &str,
    ) -> Result<Option<StateSnapshot>, StoreError>;

    /// The seq the next outbox record of `topology` must get.
    async fn next_outbox_seq(&self, topology: &str) -> Result<i64, StoreError>;

    /// Applies a batch atomically (see the module doc).
    async fn commit(&self, commit: StoreCommit) -> Result<(), StoreError>;

    /// Outbox records of `topology` with `seq >= from_seq`, in seq order.
    async fn read_outbox(
        &self,
        topology: &str,
        from_seq: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError>;

    /// Deletes the outbox records with a seq in `seqs` (already relayed).
    /// The relay passes the range since its previous delete: deleted rows
    /// stay in the table's index until vacuumed, so an open-ended
    /// `seq < n` would walk every row ever deleted, on every delete.
    async fn delete_outbox(
        &self,
        topology: &str,
        seqs: std::ops::Range<i64>,
    ) -> Result<u64, StoreError>;

    /// Reads a topology's control row, creating the default one (running,
    /// epoch 0) when absent, so that commits have a row to lock against.
    async fn control(&self, topology: &str) -> Result<TopologyControl, StoreError>;

    /// Pauses or resumes a topology and moves its epoch on, atomically with
    /// respect to commits: once this returns, no commit folded under an
    /// older epoch is accepted. Returns the new control row.
    async fn set_paused(&self, topology: &str, paused: bool)
    -> Result<TopologyControl, StoreError>;

    /// Whether `table` holds no row. The default dumps the table; the SQL
    /// stores ask with one query.
    async fn table_is_empty(&self, table: &TableSpec) -> Result<bool, StoreError> {
        Ok(self.dump_table(table).await?.is_empty())
    }

    /// Every row of a table as JSON objects ordered by key (tests, digests, diffs).
    async fn dump_table(&self, table: &TableSpec) -> Result<Vec<serde_json::Value>, StoreError>;

    /// Keyword search over `table`'s [`TextIndex`](crate::projection::TextIndex):
    /// rows of `tenant` whose text holds any of `terms` (lower-case words,
    /// letters and digits only), best first, at most `limit`, each with the
    /// store's relevance score (higher is better; comparable within one
    /// answer only). The default — a store without text indexes, or a table
    /// without one — is a permanent error.
    async fn keyword_search(
        &self,
        table: &TableSpec,
        tenant: &str,
        terms: &[String],
        limit: usize,
    ) -> Result<Vec<KeywordHit>, StoreError> {
        let _ = (tenant, terms, limit);
        Err(StoreError::permanent(
            "keyword search",
            format!(
                "the {} store has no text index on `{}`",
                self.backend(),
                table.name
            ),
        ))
    }

    /// Closes connections, waiting for running statements (before a store's
    /// files or schema are moved or removed). The default does nothing.
    async fn close(&self) {}

    /// A topology's stored positions and the dumps of `tables`, all read from
    /// one consistent snapshot: the rows are exactly the fold of the log up
    /// to those positions, even while a worker keeps committing.
    async fn snapshot(
        &self,
        topology: &str,
        tables: &[TableSpec],
    ) -> Result<StoreSnapshot, StoreError>;
}

/// One answer of [`ProjectionStore::keyword_search`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeywordHit {
    /// The row's [`TextIndex::id`](crate::projection::TextIndex::id).
    pub id: String,
    /// Relevance (Postgres `ts_rank`, SQLite `-bm25`): higher is better.
    pub score: f64,
}

/// Keeps the words a text index can match: letters and digits only (so a
/// term is never query syntax), non-empty, each once, in order.
pub fn keyword_terms(terms: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in terms {
        let w: String = t
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        if !w.is_empty() && !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// What [`ProjectionStore::snapshot`] returns.
#[derive(Debug, Clone, Default)]
pub struct StoreSnapshot {
    /// (topic, partition) → next offset.
    pub offsets: BTreeMap<(String, i32), i64>,
    /// One dump per requested table, in the requested order.
    pub tables: Vec<Vec<serde_json::Value>>,
}

/// Checks a commit's epoch against the stored control row; the stores call
/// it inside the commit's transaction, after locking that row.
pub fn check_fence(
    topology: &str,
    control: &TopologyControl,
    epoch: Option<i64>,
) -> Result<(), StoreError> {
    let Some(epoch) = epoch else { return Ok(()) };
    let reason = if control.paused {
        "it is paused".to_string()
    } else if control.epoch != epoch {
        format!(
            "its control epoch moved from {epoch} to {} (paused, resumed or swapped meanwhile)",
            control.epoch
        )
    } else {
        return Ok(());
    };
    Err(StoreError::Fenced {
        topology: topology.to_string(),
        reason,
    })
}

/// blake3 digest of a table's rows in key order: equal digests, equal projections.
pub async fn table_digest(
    store: &dyn ProjectionStore,
    table: &TableSpec,
) -> Result<String, StoreError> {
    Ok(rows_digest(&store.dump_table(table).await?))
}

/// blake3 digest of dumped rows in order (what [`table_digest`] hashes).
pub fn rows_digest(rows: &[serde_json::Value]) -> String {
    let mut h = blake3::Hasher::new();
    for row in rows {
        h.update(row.to_string().as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}
