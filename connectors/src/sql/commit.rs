//! The commit of a batch, written once for both SQL stores.
//!
//! A batch is one transaction, in this order:
//!
//! 1. before it opens: check the batch and encode every statement, so that
//!    locks are held only for the statements themselves (on SQLite: the
//!    write lock is taken only after this);
//! 2. with an epoch: read the topology's control row and refuse a commit a
//!    pause or swap has fenced ([`check_fence`]);
//! 3. with outbox records: lock the topology's outbox seq and check that the
//!    batch starts at it ([`StoreError::OutboxSequence`] otherwise — e.g. a
//!    zombie writer of the same topology);
//! 4. the upserts, the outbox records, the offsets;
//! 5. the new next outbox seq, then the state snapshot;
//! 6. `COMMIT`. A failure there is [`StoreError::Unavailable`]: the batch may
//!    or may not be stored, and the worker resumes from the stored offsets.
//!
//! Any failure before `COMMIT` rolls the transaction back. What differs per
//! backend — the SQL of each step and how it locks — is a [`CommitDialect`].

use super::batch::{TableBatch, TableRegistry, check_outbox_dense, dedupe_offsets, group_upserts};
use super::error::{db_error, rollback};
use conductor_engine::store::{
    OutboxRecord, StateSnapshot, StoreCommit, StoreError, TopologyControl, check_fence,
};
use sqlx::Transaction;
use std::collections::BTreeMap;
use std::future::Future;

/// What one backend runs at each step of [`commit_batch`]. The order of the
/// steps, the checks between them and the error each failure becomes are
/// [`commit_batch`]'s alone.
pub(crate) trait CommitDialect: Sync {
    /// The backend's name, for log lines.
    const BACKEND: &'static str;
    type Db: sqlx::Database;
    /// A statement encoded with its binds, ready to run.
    type Statement: Send;

    /// Opens the transaction a batch commits in.
    fn begin(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;

    /// The version-guarded upserts of one table's rows.
    fn upsert_statements(batch: TableBatch) -> Result<Vec<Self::Statement>, StoreError>;

    /// The inserts of outbox records, each encoded as an
    /// [`OutboxRow`](super::outbox::OutboxRow); none for no record.
    fn outbox_statements(
        topology: &str,
        outbox: Vec<OutboxRecord>,
    ) -> Result<Vec<Self::Statement>, StoreError>;

    /// The upserts of `topology`'s input offsets; none for no offset.
    fn offset_statements(
        operation: &str,
        topology: &str,
        offsets: BTreeMap<(String, i32), i64>,
    ) -> Result<Vec<Self::Statement>, StoreError>;

    /// The topology's control row (the default when absent), read so that
    /// no pause or swap can slip in between this read and `COMMIT`.
    fn read_control(
        tx: &mut Transaction<'static, Self::Db>,
        topology: &str,
    ) -> impl Future<Output = Result<TopologyControl, sqlx::Error>> + Send;

    /// The topology's stored next outbox seq (0 when none), locked so that a
    /// second writer of the topology sees it only once this batch is done.
    fn lock_outbox_seq(
        tx: &mut Transaction<'static, Self::Db>,
        topology: &str,
    ) -> impl Future<Output = Result<i64, sqlx::Error>> + Send;

    /// Runs `statements` in order; the first failure stops it.
    fn execute(
        tx: &mut Transaction<'static, Self::Db>,
        statements: Vec<Self::Statement>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores the topology's next outbox seq.
    fn store_outbox_seq(
        tx: &mut Transaction<'static, Self::Db>,
        topology: &str,
        next: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Replaces the topology's state snapshot of `state.scope`.
    fn store_state(
        tx: &mut Transaction<'static, Self::Db>,
        topology: &str,
        state: StateSnapshot,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// Commits one batch into the tables of `tables` (see the module doc).
pub(crate) async fn commit_batch<D: CommitDialect>(
    dialect: &D,
    tables: &TableRegistry,
    commit: StoreCommit,
) -> Result<(), StoreError> {
    let StoreCommit {
        topology,
        upserts,
        outbox,
        offsets,
        epoch,
        state,
    } = commit;
    // Validation and encoding happen before the transaction opens, so row
    // locks (SQLite: the write lock) are held only for the statements.
    check_outbox_dense(&topology, &outbox)?;
    let first_seq = outbox.first().map(|r| r.seq);
    let next_seq = outbox.last().map(|r| r.seq + 1);
    let mut statements = Vec::new();
    for batch in group_upserts(tables, upserts)? {
        statements.extend(D::upsert_statements(batch)?);
    }
    statements.extend(D::outbox_statements(&topology, outbox)?);
    statements.extend(D::offset_statements(
        "commit (offsets)",
        &topology,
        dedupe_offsets(offsets),
    )?);

    let mut tx = dialect
        .begin()
        .await
        .map_err(|e| db_error("commit (begin)", e))?;
    if epoch.is_some() {
        let control = match D::read_control(&mut tx, &topology).await {
            Ok(c) => c,
            Err(e) => {
                return rollback(D::BACKEND, tx, db_error("commit (read control)", e)).await;
            }
        };
        if let Err(e) = check_fence(&topology, &control, epoch) {
            return rollback(D::BACKEND, tx, e).await;
        }
    }
    if let Some(first) = first_seq {
        match D::lock_outbox_seq(&mut tx, &topology).await {
            Err(e) => {
                return rollback(D::BACKEND, tx, db_error("commit (read outbox seq)", e)).await;
            }
            Ok(expected) if expected != first => {
                return rollback(
                    D::BACKEND,
                    tx,
                    StoreError::OutboxSequence {
                        topology,
                        expected,
                        got: first,
                    },
                )
                .await;
            }
            Ok(_) => {}
        }
    }
    if let Err(e) = D::execute(&mut tx, statements).await {
        return rollback(D::BACKEND, tx, e).await;
    }
    if let Some(next) = next_seq
        && let Err(e) = D::store_outbox_seq(&mut tx, &topology, next).await
    {
        return rollback(D::BACKEND, tx, db_error("commit (outbox seq)", e)).await;
    }
    if let Some(state) = state
        && let Err(e) = D::store_state(&mut tx, &topology, state).await
    {
        return rollback(D::BACKEND, tx, db_error("commit (state snapshot)", e)).await;
    }
    tx.commit().await.map_err(|e| StoreError::Unavailable {
        operation: "commit (COMMIT)".into(),
        detail: format!("{e}; the batch may or may not be stored: resume from the stored offsets"),
        source: None,
    })
}
