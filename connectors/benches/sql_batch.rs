//! Batch commits into the SQL stores next to their ceiling, in the same run.
//!
//! For batches of 100, 1,000 and 5,000 rows of the contract table (8 columns
//! incl. JSON and a timestamp), with the offsets committed alongside:
//! - sqlite insert / update: `SqliteStore::commit` of new keys, then of the
//!   same keys at a higher version (the version-guarded `ON CONFLICT` path);
//! - postgres insert / update: the same through `PostgresStore::commit`
//!   (multi-row `UNNEST` upserts);
//! - postgres copy: `PostgresStore::copy_rows` of the same rows into an empty
//!   table: no guard, no offsets, no transaction of ours — the ceiling.
//!
//! Prints a table and writes `$CARGO_TARGET_DIR/bench-reports/sql_batch.json`.
//! Postgres cases run when `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) answers, in a scratch schema
//! dropped at the end.
//!
//! Run: `cargo bench -p conductor-connectors --bench sql_batch` (env
//! `SQL_BENCH_ROWS` sets the rows per case, default 50,000).

use conductor_connectors::{PostgresStore, SqliteStore};
use conductor_engine::log::InputPosition;
use conductor_engine::projection::{RowUpsert, SqlValue, TableSpec};
use conductor_engine::store::{ProjectionStore, StoreCommit};
use conductor_engine::testing::contract_table;
use std::time::{Duration, Instant};

struct Case {
    backend: &'static str,
    mode: &'static str,
    batch: usize,
    rows: usize,
    elapsed: Duration,
}

fn row(table: &'static str, i: usize, version: i64) -> RowUpsert {
    RowUpsert {
        table,
        key: vec![format!("tenant-{}", i % 7), format!("entity-{i:08}")],
        version,
        values: vec![
            SqlValue::Text(format!("label {i}")),
            SqlValue::BigInt(i as i64),
            SqlValue::Bool(i.is_multiple_of(2)),
            SqlValue::Json(
                serde_json::json!({"given_name": "Ada", "surname": "Lovelace", "postcode": format!("{}", 2000 + i % 100)}),
            ),
            SqlValue::Timestamp(
                chrono::DateTime::from_timestamp_micros(1_770_000_000_000_000 + i as i64)
                    .unwrap_or_default(),
            ),
        ],
        deleted: false,
    }
}

/// Commits `rows` rows in batches of `batch`, at `version`; returns the time taken.
async fn commit_all(
    store: &dyn ProjectionStore,
    table: &'static str,
    rows: usize,
    batch: usize,
    version: i64,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    for (n, start) in (0..rows).step_by(batch).enumerate() {
        let upserts: Vec<_> = (start..(start + batch).min(rows))
            .map(|i| row(table, i, version))
            .collect();
        let offsets = vec![InputPosition {
            topic: "bench".into(),
            partition: 0,
            next_offset: (n + 1) as i64,
        }];
        let commit = StoreCommit {
            topology: format!("bench-{table}"),
            upserts,
            outbox: vec![],
            offsets,
            epoch: None,
            state: None,
        };
        let started = Instant::now();
        store.commit(commit).await.expect("commit");
        elapsed += started.elapsed();
    }
    elapsed
}

fn table(name: &str) -> TableSpec {
    // Leaked once per case: specs name tables with `&'static str`.
    contract_table(Box::leak(name.to_string().into_boxed_str()))
}

async fn run_store(
    store: &dyn ProjectionStore,
    backend: &'static str,
    rows: usize,
    cases: &mut Vec<Case>,
) {
    for batch in [100, 1_000, 5_000] {
        let spec = table(&format!("bench_{backend}_{batch}"));
        store
            .migrate(std::slice::from_ref(&spec))
            .await
            .expect("migrate");
        let elapsed = commit_all(store, spec.name, rows, batch, 1).await;
        cases.push(Case {
            backend,
            mode: "insert",
            batch,
            rows,
            elapsed,
        });
        let elapsed = commit_all(store, spec.name, rows, batch, 2).await;
        cases.push(Case {
            backend,
            mode: "update",
            batch,
            rows,
            elapsed,
        });
    }
}

async fn run_copy(store: &PostgresStore, rows: usize, cases: &mut Vec<Case>) {
    for batch in [100, 1_000, 5_000] {
        let spec = table(&format!("bench_copy_{batch}"));
        store
            .migrate(std::slice::from_ref(&spec))
            .await
            .expect("migrate");
        let mut elapsed = Duration::ZERO;
        for start in (0..rows).step_by(batch) {
            let data: Vec<_> = (start..(start + batch).min(rows))
                .map(|i| row(spec.name, i, 1))
                .collect();
            let started = Instant::now();
            store.copy_rows(&spec, &data).await.expect("copy");
            elapsed += started.elapsed();
        }
        cases.push(Case {
            backend: "postgres",
            mode: "copy",
            batch,
            rows,
            elapsed,
        });
    }
}

#[tokio::main]
async fn main() {
    let rows: usize = std::env::var("SQL_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let mut cases = Vec::new();

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(&dir.path().join("bench.db"))
        .await
        .expect("open sqlite");
    run_store(&sqlite, "sqlite", rows, &mut cases).await;

    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("bench_{}", std::process::id());
    match PostgresStore::connect(&url, Some(&schema)).await {
        Ok(pg) => {
            run_store(&pg, "postgres", rows, &mut cases).await;
            run_copy(&pg, rows, &mut cases).await;
            pg.drop_schema().await.expect("drop bench schema");
        }
        Err(e) => eprintln!("postgres cases skipped: {e}"),
    }

    println!(
        "{:<9} {:<7} {:>6} {:>8} {:>10} {:>12} {:>14}",
        "backend", "mode", "batch", "rows", "ms", "rows/s", "ms per batch"
    );
    let mut report = Vec::new();
    for c in &cases {
        let per_sec = c.rows as f64 / c.elapsed.as_secs_f64();
        let per_batch = c.elapsed.as_secs_f64() * 1e3 / c.rows.div_ceil(c.batch) as f64;
        println!(
            "{:<9} {:<7} {:>6} {:>8} {:>10.1} {:>12.0} {:>14.2}",
            c.backend,
            c.mode,
            c.batch,
            c.rows,
            c.elapsed.as_secs_f64() * 1e3,
            per_sec,
            per_batch
        );
        report.push(serde_json::json!({
            "backend": c.backend, "mode": c.mode, "batch": c.batch, "rows": c.rows,
            "elapsed_ms": c.elapsed.as_secs_f64() * 1e3, "rows_per_sec": per_sec, "ms_per_batch": per_batch,
        }));
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let out = std::path::Path::new(&target).join("bench-reports");
    if std::fs::create_dir_all(&out).is_ok() {
        let path = out.join("sql_batch.json");
        match std::fs::write(
            &path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        ) {
            Ok(()) => println!("report: {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}
