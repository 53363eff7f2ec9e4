//! Bookkeeping tables of the SQL stores, per backend.
//!
//! - `conductor_offsets`: the next input offset per (topology, topic,
//!   partition), written in the same transaction as the batch's rows.
//! - `conductor_outbox`: records waiting to be relayed to the log, with the
//!   input position they derive from.
//! - `conductor_outbox_seq`: the seq the next outbox record of a topology must
//!   get. Kept apart from the outbox because relayed records are deleted, and
//!   the seq must not move back when they are.
//! - `conductor_topology_control`: lifecycle flags (paused) that survive
//!   restarts and are shared across processes, and the control epoch that
//!   fences commits folded before a pause or swap.
//! - `conductor_state`: a stateful processor's snapshot per (topology,
//!   scope), with its format version and the positions it describes,
//!   replaced in the transaction of the batch it follows.
//!
//! Every statement is `IF NOT EXISTS`, so running them again is a no-op. They
//! are plain statements rather than sqlx migrations: projection tables are
//! created from `TableSpec`s at run time anyway, and both kinds of DDL then
//! go through the same transaction (and, on Postgres, the same advisory lock).
//! A column added later must come with its own `ALTER TABLE … ADD COLUMN IF
//! NOT EXISTS` here.

/// SQLite bookkeeping DDL. Tables are STRICT so a mistyped bind fails loudly.
pub const SQLITE: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS "conductor_offsets" (
        "topology" TEXT NOT NULL,
        "topic" TEXT NOT NULL,
        "partition" INTEGER NOT NULL,
        "next_offset" INTEGER NOT NULL,
        PRIMARY KEY ("topology", "topic", "partition")
    ) STRICT"#,
    r#"CREATE TABLE IF NOT EXISTS "conductor_outbox" (
        "topology" TEXT NOT NULL,
        "seq" INTEGER NOT NULL,
        "topic" TEXT NOT NULL,
        "key" BLOB,
        "value" BLOB NOT NULL,
        "headers" TEXT NOT NULL,
        "source_topic" TEXT NOT NULL,
        "source_partition" INTEGER NOT NULL,
        "source_offset" INTEGER NOT NULL,
        "source_index" INTEGER NOT NULL,
        PRIMARY KEY ("topology", "seq")
    ) STRICT"#,
    r#"CREATE TABLE IF NOT EXISTS "conductor_outbox_seq" (
        "topology" TEXT NOT NULL PRIMARY KEY,
        "next_seq" INTEGER NOT NULL
    ) STRICT"#,
    r#"CREATE TABLE IF NOT EXISTS "conductor_topology_control" (
        "topology" TEXT NOT NULL PRIMARY KEY,
        "paused" INTEGER NOT NULL DEFAULT 0,
        "epoch" INTEGER NOT NULL DEFAULT 0
    ) STRICT"#,
    r#"CREATE TABLE IF NOT EXISTS "conductor_state" (
        "topology" TEXT NOT NULL,
        "scope" TEXT NOT NULL,
        "format_version" INTEGER NOT NULL,
        "state" BLOB NOT NULL,
        "positions" TEXT NOT NULL,
        PRIMARY KEY ("topology", "scope")
    ) STRICT"#,
];

/// Columns added to SQLite bookkeeping tables after their first release:
/// (table, column, definition). SQLite has no `ADD COLUMN IF NOT EXISTS`, so
/// the store adds each one only when `pragma_table_info` lacks it.
pub const SQLITE_ADDED_COLUMNS: &[(&str, &str, &str)] = &[(
    "conductor_topology_control",
    "epoch",
    r#""epoch" INTEGER NOT NULL DEFAULT 0"#,
)];

/// Postgres bookkeeping DDL. `source_index` is BIGINT because it holds a u32.
pub const POSTGRES: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS "conductor_offsets" (
        "topology" TEXT NOT NULL,
        "topic" TEXT NOT NULL,
        "partition" INTEGER NOT NULL,
        "next_offset" BIGINT NOT NULL,
        PRIMARY KEY ("topology", "topic", "partition")
    )"#,
    r#"CREATE TABLE IF NOT EXISTS "conductor_outbox" (
        "topology" TEXT NOT NULL,
        "seq" BIGINT NOT NULL,
        "topic" TEXT NOT NULL,
        "key" BYTEA,
        "value" BYTEA NOT NULL,
        "headers" TEXT NOT NULL,
        "source_topic" TEXT NOT NULL,
        "source_partition" INTEGER NOT NULL,
        "source_offset" BIGINT NOT NULL,
        "source_index" BIGINT NOT NULL,
        PRIMARY KEY ("topology", "seq")
    )"#,
    r#"CREATE TABLE IF NOT EXISTS "conductor_outbox_seq" (
        "topology" TEXT NOT NULL PRIMARY KEY,
        "next_seq" BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE IF NOT EXISTS "conductor_topology_control" (
        "topology" TEXT NOT NULL PRIMARY KEY,
        "paused" BOOLEAN NOT NULL DEFAULT FALSE
    )"#,
    r#"ALTER TABLE "conductor_topology_control" ADD COLUMN IF NOT EXISTS "epoch" BIGINT NOT NULL DEFAULT 0"#,
    r#"CREATE TABLE IF NOT EXISTS "conductor_state" (
        "topology" TEXT NOT NULL,
        "scope" TEXT NOT NULL,
        "format_version" BIGINT NOT NULL,
        "state" BYTEA NOT NULL,
        "positions" TEXT NOT NULL,
        PRIMARY KEY ("topology", "scope")
    )"#,
];

/// Key of the Postgres advisory lock held (per transaction) around DDL.
///
/// `CREATE TABLE IF NOT EXISTS` is not safe against itself: two sessions
/// creating the same table at once can both pass the existence check and one
/// then fails on the catalog's unique index. Serialising DDL through one lock
/// makes concurrent starts of several `conductor run` processes safe. The
/// value is the ASCII of "conductr", so it is recognisable in `pg_locks`.
pub const POSTGRES_DDL_LOCK: i64 = 0x636f_6e64_7563_7472;

/// The columns of the outbox, in the order every statement uses.
pub const OUTBOX_COLUMNS: &str = r#""topology", "seq", "topic", "key", "value", "headers", "source_topic", "source_partition", "source_offset", "source_index""#;

/// Number of columns in [`OUTBOX_COLUMNS`].
pub const OUTBOX_COLUMN_COUNT: usize = 10;
