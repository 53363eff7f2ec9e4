//! Generations of a topology's projection: the **live** one that workers
//! write and readers query, a **shadow** being rebuilt beside it, and the
//! **previous** live one kept for rollback.
//!
//! Where they live:
//!
//! | backend  | live                     | shadow                              | previous                              |
//! |----------|--------------------------|-------------------------------------|---------------------------------------|
//! | Postgres | the store's schema `L`   | schema `L_shadow_<topology>`        | schema `L_previous_<topology>`        |
//! | SQLite   | the store's file `x.db`  | file `x.shadow-<topology>.db`       | file `x.previous-<topology>.db`       |
//!
//! Every generation is a complete store (projection tables plus bookkeeping),
//! so a worker can fold into it like into the live one.
//!
//! [`GenerationHome::exchange`] makes another generation live in ONE
//! transaction of the live database, which also moves the topology's stored
//! offsets and its control epoch (fencing any worker that folded against the
//! old tables). Readers see the old tables or the new ones, never a mix:
//! - Postgres moves tables between schemas (`ALTER TABLE … SET SCHEMA`, no
//!   copying); a query blocked on the swap's lock resolves the name again
//!   once it may run, and finds the new table.
//! - SQLite copies the incoming rows into the live tables inside one write
//!   transaction; WAL readers keep their snapshot until it commits. The
//!   outgoing live state is first saved whole with `VACUUM INTO`.

use super::{QuotedTable, quote_ident};
use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use conductor_engine::projection::TableSpec;
use conductor_engine::store::{ProjectionStore, StoreError, TopologyControl};
use sqlx::{AssertSqlSafe, Connection};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A generation other than the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    Shadow,
    Previous,
}

impl Generation {
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::Shadow => "shadow",
            Generation::Previous => "previous",
        }
    }
}

/// Where the generations of a live store live (see the module doc).
#[derive(Clone)]
pub enum GenerationHome {
    Sqlite {
        live: SqliteStore,
        path: PathBuf,
    },
    Postgres {
        live: PostgresStore,
        url: String,
        /// The live store's schema (its `current_schema()`), unquoted.
        schema: String,
    },
}

fn db(operation: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| crate::sql::db_error(operation, e)
}

impl GenerationHome {
    /// Generations beside a SQLite database file.
    pub async fn sqlite(path: &Path) -> Result<Self, StoreError> {
        Ok(GenerationHome::Sqlite {
            live: SqliteStore::open(path).await?,
            path: path.to_path_buf(),
        })
    }

    /// Generations beside the Postgres schema that `url` connects to.
    pub async fn postgres(url: &str) -> Result<Self, StoreError> {
        let live = PostgresStore::connect(url, None).await?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(live.pool())
            .await
            .map_err(db("read current schema"))?;
        Ok(GenerationHome::Postgres {
            live,
            url: url.to_string(),
            schema,
        })
    }

    /// The live store.
    pub fn live(&self) -> Arc<dyn ProjectionStore> {
        match self {
            GenerationHome::Sqlite { live, .. } => Arc::new(live.clone()),
            GenerationHome::Postgres { live, .. } => Arc::new(live.clone()),
        }
    }

    /// Where `generation` of `topology` lives, for messages.
    pub fn describe(&self, topology: &str, generation: Generation) -> String {
        match self {
            GenerationHome::Sqlite { path, .. } => {
                format!(
                    "file {}",
                    self.file_of(path, topology, generation).display()
                )
            }
            GenerationHome::Postgres { schema, .. } => {
                format!("schema {}", schema_of(schema, topology, generation))
            }
        }
    }

    fn file_of(&self, live: &Path, topology: &str, generation: Generation) -> PathBuf {
        let stem = live
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "projections".into());
        let ext = live
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        live.with_file_name(format!("{stem}.{}-{topology}{ext}", generation.as_str()))
    }

    /// Whether `generation` of `topology` exists.
    pub async fn exists(&self, topology: &str, generation: Generation) -> Result<bool, StoreError> {
        match self {
            GenerationHome::Sqlite { path, .. } => {
                Ok(self.file_of(path, topology, generation).exists())
            }
            GenerationHome::Postgres { live, schema, .. } => {
                let name = schema_of(schema, topology, generation);
                let found: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
                        .bind(&name)
                        .fetch_optional(live.pool())
                        .await
                        .map_err(db("look up schema"))?;
                Ok(found.is_some())
            }
        }
    }

    /// Opens `generation` of `topology`, creating an empty one if missing.
    pub async fn open(
        &self,
        topology: &str,
        generation: Generation,
    ) -> Result<Arc<dyn ProjectionStore>, StoreError> {
        Ok(match self {
            GenerationHome::Sqlite { path, .. } => {
                Arc::new(SqliteStore::open(&self.file_of(path, topology, generation)).await?)
            }
            GenerationHome::Postgres { url, schema, .. } => {
                let name = schema_of(schema, topology, generation);
                Arc::new(PostgresStore::connect(url, Some(&name)).await?)
            }
        })
    }

    /// Removes `generation` of `topology` with everything in it. Stores
    /// opened on it must be dropped first.
    pub async fn remove(&self, topology: &str, generation: Generation) -> Result<(), StoreError> {
        match self {
            GenerationHome::Sqlite { path, .. } => {
                remove_sqlite_files(&self.file_of(path, topology, generation))
            }
            GenerationHome::Postgres { live, schema, .. } => {
                let name = quote_ident(&schema_of(schema, topology, generation))?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(live.pool())
                .await
                .map_err(db("drop generation schema"))?;
                Ok(())
            }
        }
    }

    /// Stores a short JSON note about `generation` (how a shadow was built)
    /// inside it, so that it travels with it.
    pub async fn write_note(
        &self,
        topology: &str,
        generation: Generation,
        note: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let create = r#"CREATE TABLE IF NOT EXISTS "conductor_generation_note" ("topology" TEXT NOT NULL PRIMARY KEY, "note" TEXT NOT NULL)"#;
        let text = note.to_string();
        match self {
            GenerationHome::Sqlite { path, .. } => {
                let store = SqliteStore::open(&self.file_of(path, topology, generation)).await?;
                let pool = store.writer();
                sqlx::query(create)
                    .execute(pool)
                    .await
                    .map_err(db("write generation note"))?;
                sqlx::query(r#"INSERT INTO "conductor_generation_note" VALUES (?, ?) ON CONFLICT ("topology") DO UPDATE SET "note" = excluded."note""#)
                    .bind(topology)
                    .bind(&text)
                    .execute(pool)
                    .await
                    .map_err(db("write generation note"))?;
                store.close().await;
            }
            GenerationHome::Postgres { url, schema, .. } => {
                let store =
                    PostgresStore::connect(url, Some(&schema_of(schema, topology, generation)))
                        .await?;
                let pool = store.pool();
                sqlx::query(create)
                    .execute(pool)
                    .await
                    .map_err(db("write generation note"))?;
                sqlx::query(r#"INSERT INTO "conductor_generation_note" VALUES ($1, $2) ON CONFLICT ("topology") DO UPDATE SET "note" = excluded."note""#)
                    .bind(topology)
                    .bind(&text)
                    .execute(pool)
                    .await
                    .map_err(db("write generation note"))?;
                store.close().await;
            }
        }
        Ok(())
    }

    /// The note [`write_note`](Self::write_note) left, if any.
    pub async fn read_note(
        &self,
        topology: &str,
        generation: Generation,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        if !self.exists(topology, generation).await? {
            return Ok(None);
        }
        let text: Option<String> = match self {
            GenerationHome::Sqlite { path, .. } => {
                let store = SqliteStore::open(&self.file_of(path, topology, generation)).await?;
                let found = sqlx::query_scalar(
                    r#"SELECT "note" FROM "conductor_generation_note" WHERE "topology" = ?"#,
                )
                .bind(topology)
                .fetch_optional(store.writer())
                .await;
                store.close().await;
                found.unwrap_or(None)
            }
            GenerationHome::Postgres { url, schema, .. } => {
                let store =
                    PostgresStore::connect(url, Some(&schema_of(schema, topology, generation)))
                        .await?;
                let found = sqlx::query_scalar(
                    r#"SELECT "note" FROM "conductor_generation_note" WHERE "topology" = $1"#,
                )
                .bind(topology)
                .fetch_optional(store.pool())
                .await;
                store.close().await;
                found.unwrap_or(None)
            }
        };
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Makes `incoming` the live generation of `topology`'s `tables`, in one
    /// transaction of the live database: rows, the topology's offsets and a
    /// new control epoch (with `paused` set to `resume_paused`). The outgoing
    /// live generation becomes the previous one; the incoming generation is
    /// gone afterwards (for `Previous`, it now holds the outgoing one).
    ///
    /// A shadow's outbox rows (a migration's derived events, see
    /// `conductor_replay::rebuild::Migration`) are appended to live's outbox
    /// in the same transaction, numbered on from live's next seq, so the
    /// relay publishes them exactly once. A previous generation's are not:
    /// they were live's, and already relayed.
    ///
    /// The caller pauses the topology first (so no batch lands meanwhile)
    /// and drops its stores opened on `incoming`.
    pub async fn exchange(
        &self,
        topology: &str,
        tables: &[TableSpec],
        incoming: Generation,
        resume_paused: bool,
    ) -> Result<TopologyControl, StoreError> {
        match self {
            GenerationHome::Sqlite { live, path } => {
                let source = self.file_of(path, topology, incoming);
                let previous = self.file_of(path, topology, Generation::Previous);
                let saved = previous.with_extension("saving");
                remove_sqlite_files(&saved)?;
                // 1. Save the outgoing live state whole (a consistent copy).
                live.vacuum_into(&saved).await?;
                // 2. The live switch itself: one write transaction.
                let control = live
                    .replace_from_file(
                        &source,
                        topology,
                        tables,
                        incoming == Generation::Shadow,
                        resume_paused,
                    )
                    .await?;
                // 3. The saved copy becomes the previous generation. A crash
                //    before this leaves the old previous (or the shadow) in
                //    place, which is harmless: live has already switched.
                remove_sqlite_files(&previous)?;
                std::fs::rename(&saved, &previous).map_err(|e| StoreError::Database {
                    operation: "keep previous generation".into(),
                    detail: format!("rename {} → {}: {e}", saved.display(), previous.display()),
                    source: None,
                })?;
                if incoming == Generation::Shadow {
                    remove_sqlite_files(&source)?;
                }
                Ok(control)
            }
            GenerationHome::Postgres { live, schema, .. } => {
                pg_exchange(live, schema, topology, tables, incoming, resume_paused).await
            }
        }
    }
}

/// Schema name of a generation (unquoted; checked when quoted).
fn schema_of(live: &str, topology: &str, generation: Generation) -> String {
    format!("{live}_{}_{topology}", generation.as_str())
}

/// Removes a SQLite database file and its WAL side files, if present.
fn remove_sqlite_files(path: &Path) -> Result<(), StoreError> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Database {
                    operation: "remove generation file".into(),
                    detail: format!("{}: {e}", Path::new(&p).display()),
                    source: None,
                });
            }
        }
    }
    Ok(())
}

async fn pg_exchange(
    live: &PostgresStore,
    live_schema: &str,
    topology: &str,
    tables: &[TableSpec],
    incoming: Generation,
    resume_paused: bool,
) -> Result<TopologyControl, StoreError> {
    let l = quote_ident(live_schema)?;
    let s = quote_ident(&schema_of(live_schema, topology, incoming))?;
    let p = quote_ident(&schema_of(live_schema, topology, Generation::Previous))?;
    let x = quote_ident(&format!("{}_x", schema_of(live_schema, topology, incoming)))?;
    let mut tx = live.pool().begin().await.map_err(db("swap (begin)"))?;
    // Locks the control row first: a worker's commit holds it FOR SHARE.
    sqlx::query(AssertSqlSafe(format!(
        r#"SELECT 1 FROM {l}."conductor_topology_control" WHERE "topology" = $1 FOR UPDATE"#
    )))
    .bind(topology)
    .execute(&mut *tx)
    .await
    .map_err(db("swap (lock control)"))?;
    let mut statements = vec![format!("CREATE SCHEMA {x}")];
    if incoming == Generation::Shadow {
        statements.extend(move_outbox_statements(&l, &s, topology, "GREATEST")?);
    }
    for t in tables {
        let name = QuotedTable::new(t)?.table;
        statements.push(format!("ALTER TABLE {l}.{name} SET SCHEMA {x}"));
        statements.push(format!("ALTER TABLE {s}.{name} SET SCHEMA {l}"));
        statements.push(format!("ALTER TABLE {x}.{name} SET SCHEMA {s}"));
    }
    // Offsets change places the same way, through the scratch schema. The
    // topology name is bound where it can be; in DDL it is a checked identifier.
    quote_ident(topology)?;
    let topo = topology;
    statements.extend([
        format!(r#"CREATE TABLE {x}."offsets" AS SELECT * FROM {l}."conductor_offsets" WHERE "topology" = '{topo}'"#),
        format!(r#"DELETE FROM {l}."conductor_offsets" WHERE "topology" = '{topo}'"#),
        format!(r#"INSERT INTO {l}."conductor_offsets" SELECT * FROM {s}."conductor_offsets" WHERE "topology" = '{topo}'"#),
        format!(r#"DELETE FROM {s}."conductor_offsets" WHERE "topology" = '{topo}'"#),
        format!(r#"INSERT INTO {s}."conductor_offsets" SELECT * FROM {x}."offsets""#),
        // A stateful processor's snapshot goes with its generation.
        format!(r#"CREATE TABLE {x}."state" AS SELECT * FROM {l}."conductor_state" WHERE "topology" = '{topo}'"#),
        format!(r#"DELETE FROM {l}."conductor_state" WHERE "topology" = '{topo}'"#),
        format!(r#"INSERT INTO {l}."conductor_state" SELECT * FROM {s}."conductor_state" WHERE "topology" = '{topo}'"#),
        format!(r#"DELETE FROM {s}."conductor_state" WHERE "topology" = '{topo}'"#),
        format!(r#"INSERT INTO {s}."conductor_state" SELECT * FROM {x}."state""#),
        format!("DROP SCHEMA {x} CASCADE"),
    ]);
    if incoming == Generation::Shadow {
        statements.push(format!("DROP SCHEMA IF EXISTS {p} CASCADE"));
        statements.push(format!("ALTER SCHEMA {s} RENAME TO {p}"));
    }
    for sql in statements {
        sqlx::query(AssertSqlSafe(sql.clone()))
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Database {
                operation: "swap".into(),
                detail: format!("{e} (in `{sql}`)"),
                source: None,
            })?;
    }
    let (paused, epoch): (bool, i64) = sqlx::query_as(AssertSqlSafe(format!(
        r#"UPDATE {l}."conductor_topology_control" SET "paused" = $2, "epoch" = "epoch" + 1
           WHERE "topology" = $1 RETURNING "paused", "epoch""#
    )))
    .bind(topology)
    .bind(resume_paused)
    .fetch_one(&mut *tx)
    .await
    .map_err(db("swap (control epoch)"))?;
    tx.commit().await.map_err(db("swap (commit)"))?;
    Ok(TopologyControl { paused, epoch })
}

/// Appends `from`'s outbox rows of `topology` to `to`'s (schema or attached
/// database names, quoted), numbered on from `to`'s next seq, and moves
/// `to`'s next seq past them; `from` keeps none. `greatest` is the SQL
/// function of the larger of two values (`MAX` on SQLite, `GREATEST` on Postgres).
fn move_outbox_statements(
    to: &str,
    from: &str,
    topology: &str,
    greatest: &str,
) -> Result<Vec<String>, StoreError> {
    quote_ident(topology)?; // a checked identifier: safe as a literal too
    let cols = super::migrations::OUTBOX_COLUMNS;
    let t = format!(r#""topology" = '{topology}'"#);
    let next =
        format!(r#"COALESCE((SELECT "next_seq" FROM {to}."conductor_outbox_seq" WHERE {t}), 0)"#);
    let first =
        format!(r#"(SELECT COALESCE(MIN("seq"), 0) FROM {from}."conductor_outbox" WHERE {t})"#);
    Ok(vec![
        format!(
            r#"INSERT INTO {to}."conductor_outbox" ({cols})
               SELECT "topology", "seq" - {first} + {next}, "topic", "key", "value", "headers",
                      "source_topic", "source_partition", "source_offset", "source_index"
               FROM {from}."conductor_outbox" WHERE {t}"#
        ),
        format!(r#"DELETE FROM {from}."conductor_outbox" WHERE {t}"#),
        format!(
            r#"INSERT INTO {to}."conductor_outbox_seq" ("topology", "next_seq")
               VALUES ('{topology}', {greatest}(COALESCE((SELECT MAX("seq") + 1 FROM {to}."conductor_outbox" WHERE {t}), 0), {next}))
               ON CONFLICT ("topology") DO UPDATE SET "next_seq" = excluded."next_seq""#
        ),
    ])
}

/// Used by [`GenerationHome::exchange`] on SQLite.
impl SqliteStore {
    /// `VACUUM INTO dest`: a consistent copy of the whole database.
    pub(crate) async fn vacuum_into(&self, dest: &Path) -> Result<(), StoreError> {
        let dest = dest.to_string_lossy().into_owned();
        let mut conn = self
            .writer()
            .acquire()
            .await
            .map_err(db("save generation"))?;
        sqlx::query("VACUUM INTO ?")
            .bind(&dest)
            .execute(&mut *conn)
            .await
            .map_err(db("save generation (VACUUM INTO)"))?;
        Ok(())
    }

    /// Replaces the rows of `tables` and `topology`'s offsets with those of
    /// the database file `source`, bumps the control epoch and sets `paused`,
    /// all in one write transaction.
    pub(crate) async fn replace_from_file(
        &self,
        source: &Path,
        topology: &str,
        tables: &[TableSpec],
        move_outbox: bool,
        resume_paused: bool,
    ) -> Result<TopologyControl, StoreError> {
        let mut conn = self.writer().acquire().await.map_err(db("swap"))?;
        sqlx::query("ATTACH DATABASE ? AS \"incoming\"")
            .bind(source.to_string_lossy().into_owned())
            .execute(&mut *conn)
            .await
            .map_err(db("swap (attach incoming generation)"))?;
        let result = async {
            let mut tx = conn
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(db("swap (begin)"))?;
            for t in tables {
                let q = QuotedTable::new(t)?;
                let cols = q.column_list();
                for sql in [
                    format!("DELETE FROM main.{}", q.table),
                    format!(
                        "INSERT INTO main.{} ({cols}) SELECT {cols} FROM \"incoming\".{}",
                        q.table, q.table
                    ),
                ] {
                    sqlx::query(AssertSqlSafe(sql))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("swap (copy rows)"))?;
                }
            }
            sqlx::query(r#"DELETE FROM main."conductor_offsets" WHERE "topology" = ?"#)
                .bind(topology)
                .execute(&mut *tx)
                .await
                .map_err(db("swap (offsets)"))?;
            sqlx::query(
                r#"INSERT INTO main."conductor_offsets" SELECT * FROM "incoming"."conductor_offsets" WHERE "topology" = ?"#,
            )
            .bind(topology)
            .execute(&mut *tx)
            .await
            .map_err(db("swap (offsets)"))?;
            if move_outbox {
                for sql in move_outbox_statements("main", "\"incoming\"", topology, "MAX")? {
                    sqlx::query(AssertSqlSafe(sql))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("swap (outbox)"))?;
                }
            }
            // A stateful processor's snapshot goes with its generation.
            sqlx::query(r#"DELETE FROM main."conductor_state" WHERE "topology" = ?"#)
                .bind(topology)
                .execute(&mut *tx)
                .await
                .map_err(db("swap (state)"))?;
            sqlx::query(
                r#"INSERT INTO main."conductor_state" SELECT * FROM "incoming"."conductor_state" WHERE "topology" = ?"#,
            )
            .bind(topology)
            .execute(&mut *tx)
            .await
            .map_err(db("swap (state)"))?;
            let (paused, epoch): (bool, i64) = sqlx::query_as(
                r#"INSERT INTO main."conductor_topology_control" ("topology", "paused", "epoch") VALUES (?, ?, 1)
                   ON CONFLICT ("topology") DO UPDATE SET "paused" = excluded."paused", "epoch" = "conductor_topology_control"."epoch" + 1
                   RETURNING "paused", "epoch""#,
            )
            .bind(topology)
            .bind(resume_paused)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("swap (control epoch)"))?;
            tx.commit().await.map_err(db("swap (commit)"))?;
            Ok(TopologyControl { paused, epoch })
        }
        .await;
        if let Err(e) = sqlx::query("DETACH DATABASE \"incoming\"")
            .execute(&mut *conn)
            .await
        {
            tracing::warn!(error = %e, "could not detach the incoming generation");
        }
        result
    }
}
