//! SQL projection stores: the pieces both backends share.
//!
//! [`SqliteStore`](crate::SqliteStore) and [`PostgresStore`](crate::PostgresStore)
//! implement [`ProjectionStore`](conductor_engine::store::ProjectionStore) with
//! the same semantics as the engine's in-memory reference store. What they
//! have in common lives here, one job per module:
//!
//! - `dialect`: the two dialects, identifier checking and quoting
//!   ([`Dialect`], [`quote_ident`], [`QuotedTable`]);
//! - `ddl`: which table specs a store can hold and their DDL
//!   ([`validate_spec`], [`create_table_statements`]);
//! - [`migrations`]: the bookkeeping tables; [`generations`]: live, shadow and
//!   previous generations of a projection, and the swap between them;
//! - `batch`: validation of a batch before any transaction is opened
//!   ([`validate_upsert`], [`group_upserts`], [`check_outbox_dense`]);
//! - `commit`: the commit sequence, written once and run by both stores
//!   through their `CommitDialect`;
//! - `outbox`: the one encoding of an outbox record as a row ([`OutboxRow`],
//!   [`outbox_record`], headers as JSON);
//! - `encoding`: the other value encodings that are not native to a backend
//!   (timestamps as text, state positions as JSON);
//! - `notices`: sqlx's slow-statement and slow-acquire notices at DEBUG;
//! - `error`: error mapping to [`StoreError`](conductor_engine::store::StoreError)
//!   with a readable detail.
//!
//! No query here is checked at compile time: the stores build their SQL at run
//! time from [`TableSpec`](conductor_engine::projection::TableSpec)s, whose
//! names are validated by [`quote_ident`] before they reach a statement.

mod batch;
pub(crate) mod commit;
mod ddl;
mod dialect;
mod encoding;
mod error;
pub mod generations;
pub mod migrations;
pub(crate) mod notices;
mod outbox;
pub mod text_index;

pub use batch::{
    TableBatch, TableRegistry, check_outbox_dense, dedupe_offsets, group_upserts, validate_upsert,
};
pub use ddl::{
    create_table_statements, index_name, missing_columns, table_shape_error, validate_spec,
};
pub use dialect::{Dialect, QuotedTable, quote_ident};
pub use encoding::{format_timestamp, sql_limit, state_from_row, state_positions_json};
pub(crate) use error::rollback;
pub use error::{db_error, is_retryable, is_undefined_table, table_read_error};
pub use outbox::{OutboxRow, headers_from_json, headers_to_json, outbox_record};
