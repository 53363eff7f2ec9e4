//! The Postgres projection store against the engine's store contract and a
//! real server: `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
//!
//! Every test works in a fresh schema `ct_<random>` dropped at its end (also
//! when it fails). When no server answers, the tests fail under `CI=true`
//! and print a loud notice otherwise: they never pass by skipping in CI.

mod support;

use conductor_connectors::PostgresStore;
use conductor_connectors::postgres::redact_url;
use conductor_engine::projection::SqlValue;
use conductor_engine::store::{ProjectionStore, StoreCommit, StoreError};
use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Instant;
use support::*;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Connects to a fresh schema, runs `test`, and drops the schema, also when
/// `test` panics. Returns without running `test` when Postgres is
/// unreachable, except under `CI=true`, where that is a failure.
async fn with_store<F, Fut>(name: &str, test: F)
where
    F: FnOnce(PostgresStore, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let url = database_url();
    let schema = format!("ct_{:016x}", rand::random::<u64>());
    let store = match PostgresStore::connect(&url, Some(&schema)).await {
        Ok(store) => store,
        Err(e) => {
            let message = format!(
                "Postgres not reachable at {}; set DATABASE_URL or start a server; ops/test.sh does this ({e})",
                redact_url(&url)
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message}");
            }
            eprintln!(
                "\n{bar}\nSKIPPED {name}: {message}\n{bar}\n",
                bar = "!".repeat(78)
            );
            return;
        }
    };
    let outcome = AssertUnwindSafe(test(store.clone(), schema.clone()))
        .catch_unwind()
        .await;
    if let Err(e) = store.drop_schema().await {
        eprintln!("could not drop test schema {schema}: {e}");
    }
    store.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn postgres_store_meets_the_store_contract() {
    with_store(
        "postgres_store_meets_the_store_contract",
        |store, _| async move {
            conductor_engine::testing::store_contract(&store, "contract", "contract_rows").await;
        },
    )
    .await;
}

#[tokio::test]
async fn postgres_store_searches_keywords_with_a_gin_index() {
    with_store(
        "postgres_store_searches_keywords_with_a_gin_index",
        |store, _| async move {
            conductor_engine::testing::keyword_search_contract(&store, "keyword_rows").await;
        },
    )
    .await;
}

#[tokio::test]
async fn tables_live_in_the_given_schema_and_drop_with_it() {
    with_store("tables_live_in_the_given_schema_and_drop_with_it", |store, schema| async move {
        store.migrate(&[spec("schema_rows")]).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1")
            .bind(&schema)
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(tables, ["conductor_offsets", "conductor_outbox", "conductor_outbox_seq", "conductor_state", "conductor_topology_control", "schema_rows"]);
    })
    .await;
}

#[tokio::test]
async fn upserts_a_five_thousand_row_batch_with_unnest() {
    with_store("upserts_a_five_thousand_row_batch_with_unnest", |store, _| async move {
        let table = spec("big_rows");
        store.migrate(std::slice::from_ref(&table)).await.unwrap();
        let outbox_records: Vec<_> = (0..5_000).map(outbox).collect();

        let started = Instant::now();
        store
            .commit(StoreCommit { topology: "big".into(), upserts: rows("big_rows", 5_000, 1), outbox: outbox_records, offsets: vec![position(0, 5_000)], epoch: None, state: None })
            .await
            .unwrap();
        let insert = started.elapsed();
        let started = Instant::now();
        store.commit(StoreCommit { topology: "big".into(), upserts: rows("big_rows", 5_000, 2), outbox: vec![], offsets: vec![position(0, 10_000)], epoch: None, state: None }).await.unwrap();
        let update = started.elapsed();
        eprintln!("postgres: 5,000-row commit (+5,000 outbox records) {insert:?}; 5,000-row update commit {update:?}");

        let dumped = store.dump_table(&table).await.unwrap();
        assert_eq!(dumped.len(), 5_000);
        assert!(dumped.iter().all(|r| r["version"] == 2));
        assert_eq!(store.next_outbox_seq("big").await.unwrap(), 5_000);
        assert_eq!(store.read_outbox("big", 0, 5_000).await.unwrap()[4_999], outbox(4_999));

        let keys: Vec<Vec<String>> = (0..6_000).map(|i| vec!["acme".to_string(), format!("id-{i:05}")]).collect();
        let started = Instant::now();
        let versions = store.current_versions(&table, &keys).await.unwrap();
        eprintln!("postgres: current_versions of 6,000 keys {:?}", started.elapsed());
        assert_eq!(versions.len(), 5_000, "keys past id-04999 are absent");
    })
    .await;
}

#[tokio::test]
async fn version_guard_holds_for_a_batch_mixing_older_and_newer_versions() {
    with_store(
        "version_guard_holds_for_a_batch_mixing_older_and_newer_versions",
        |store, _| async move {
            let table = spec("guard_rows");
            store.migrate(std::slice::from_ref(&table)).await.unwrap();
            let label = |l: &str| SqlValue::Text(l.into());
            store
                .commit(StoreCommit {
                    topology: "g".into(),
                    upserts: rows("guard_rows", 300, 5),
                    ..Default::default()
                })
                .await
                .unwrap();

            // One batch: ids 0..100 older (3), 100..200 equal (5), 200..300
            // newer (7), 300..400 new rows (1), and a key given twice.
            let mut batch = Vec::new();
            for (range, version, text) in [
                (0..100, 3, "older"),
                (100..200, 5, "equal"),
                (200..300, 7, "newer"),
                (300..400, 1, "new"),
            ] {
                for i in range {
                    let mut r = row("guard_rows", "acme", &format!("id-{i:05}"), version, None);
                    r.values[0] = label(text);
                    batch.push(r);
                }
            }
            let mut twice_high = row("guard_rows", "acme", "id-00000", 9, None);
            twice_high.values[0] = label("twice high");
            let mut twice_low = row("guard_rows", "acme", "id-00000", 8, None);
            twice_low.values[0] = label("twice low");
            batch.extend([twice_high, twice_low]);
            store
                .commit(StoreCommit {
                    topology: "g".into(),
                    upserts: batch,
                    ..Default::default()
                })
                .await
                .unwrap();

            let dumped = store.dump_table(&table).await.unwrap();
            assert_eq!(dumped.len(), 400);
            assert_eq!(
                (dumped[0]["version"].as_i64(), dumped[0]["label"].as_str()),
                (Some(9), Some("twice high"))
            );
            assert!(
                dumped[1..100]
                    .iter()
                    .all(|r| r["version"] == 5 && r["label"] != "older"),
                "older versions ignored"
            );
            assert!(
                dumped[100..200]
                    .iter()
                    .all(|r| r["version"] == 5 && r["label"] != "equal"),
                "equal versions ignored"
            );
            assert!(
                dumped[200..300]
                    .iter()
                    .all(|r| r["version"] == 7 && r["label"] == "newer"),
                "newer versions applied"
            );
            assert!(
                dumped[300..400]
                    .iter()
                    .all(|r| r["version"] == 1 && r["label"] == "new"),
                "new rows inserted"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn dumps_equal_the_memory_stores_for_tricky_values() {
    with_store(
        "dumps_equal_the_memory_stores_for_tricky_values",
        |store, _| async move {
            assert_same_as_memory(&store, &spec("tricky_rows"), tricky_commits("tricky_rows"))
                .await;
        },
    )
    .await;
}

#[tokio::test]
async fn copy_rows_loads_rows_that_dump_like_upserted_ones() {
    with_store("copy_rows_loads_rows_that_dump_like_upserted_ones", |store, _| async move {
        let (copied, upserted) = (spec("copied_rows"), spec("upserted_rows"));
        store.migrate(&[copied.clone(), upserted.clone()]).await.unwrap();
        let mut data = rows("copied_rows", 5_000, 1);
        data.extend(tricky_rows("copied_rows"));

        let started = Instant::now();
        assert_eq!(store.copy_rows(&copied, &data).await.unwrap(), 5_006);
        let copy = started.elapsed();
        let started = Instant::now();
        let as_upserts = data.iter().cloned().map(|mut r| {
            r.table = "upserted_rows";
            r
        });
        store.commit(StoreCommit { topology: "c".into(), upserts: as_upserts.collect(), ..Default::default() }).await.unwrap();
        eprintln!("postgres: COPY of 5,006 rows {copy:?}; version-guarded upsert of the same rows {:?}", started.elapsed());
        assert_eq!(store.dump_table(&copied).await.unwrap(), store.dump_table(&upserted).await.unwrap());

        // COPY has no version guard: a key that exists is a unique violation.
        let err = store.copy_rows(&copied, &data[..1]).await.unwrap_err();
        assert!(err.to_string().contains("duplicate key"), "{err}");
    })
    .await;
}

/// Vectors through `COPY` (BYTEA in COPY text format, many 1 MiB chunks)
/// dump bit for bit like the same vectors through the UNNEST upsert.
#[tokio::test]
async fn copy_rows_loads_vectors_that_dump_like_upserted_ones() {
    use conductor_engine::testing::{
        assert_vectors_dumped, contract_vectors, vector_row, vectors_table,
    };
    with_store(
        "copy_rows_loads_vectors_that_dump_like_upserted_ones",
        |store, _| async move {
            let (copied, upserted) = (vectors_table("copied"), vectors_table("upserted"));
            store
                .migrate(&[copied.clone(), upserted.clone()])
                .await
                .unwrap();
            let mut expected: Vec<(String, Option<Vec<f32>>)> = contract_vectors()
                .into_iter()
                .map(|(id, v)| (id.to_string(), Some(v)))
                .collect();
            expected.push(("e".into(), None));
            // ~9 MB of COPY data: 3,000 embeddings of 384 floats.
            expected.extend((0..3_000).map(|i| {
                let v = (0..384)
                    .map(|j| ((i * 384 + j) as f32).cos() * 0.3)
                    .collect();
                (format!("v-{i:05}"), Some(v))
            }));
            let data: Vec<_> = expected
                .iter()
                .map(|(id, v)| vector_row(copied.name, id, 1, v.clone()))
                .collect();
            assert_eq!(store.copy_rows(&copied, &data).await.unwrap(), 3_005);
            let as_upserts = data.iter().cloned().map(|mut r| {
                r.table = upserted.name;
                r
            });
            store
                .commit(StoreCommit {
                    topology: "cv".into(),
                    upserts: as_upserts.collect(),
                    ..Default::default()
                })
                .await
                .unwrap();
            let dumped = store.dump_table(&copied).await.unwrap();
            let expected: Vec<(&str, Option<Vec<f32>>)> = expected
                .iter()
                .map(|(id, v)| (id.as_str(), v.clone()))
                .collect();
            assert_vectors_dumped(&dumped, &expected);
            assert_eq!(dumped, store.dump_table(&upserted).await.unwrap());
        },
    )
    .await;
}

/// A BYTEA that is not a whole number of f32s fails the dump with a message
/// naming the column, rather than panicking or truncating.
#[tokio::test]
async fn a_vector_of_a_bad_length_is_a_dump_error_naming_the_column() {
    with_store(
        "a_vector_of_a_bad_length_is_a_dump_error_naming_the_column",
        |store, _| async move {
            let table = conductor_engine::testing::vectors_table("bad_length");
            store.migrate(std::slice::from_ref(&table)).await.unwrap();
            sqlx::query(
                "INSERT INTO bad_length_vectors (tenant_id, id, version, embedding) \
                 VALUES ('acme', 'x', 1, '\\x0000803f00')",
            )
            .execute(store.pool())
            .await
            .unwrap();
            let err = store.dump_table(&table).await.unwrap_err().to_string();
            assert!(
                err.contains("`embedding`") && err.contains("5 bytes long, not a multiple of 4"),
                "{err}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_statement_failing_mid_batch_leaves_nothing_applied() {
    with_store("a_statement_failing_mid_batch_leaves_nothing_applied", |store, _| async move {
        let (a, z) = (spec("aaa_rows"), spec("zzz_rows"));
        store.migrate(&[a.clone(), z.clone()]).await.unwrap();
        store.commit(StoreCommit { topology: "mid".into(), upserts: rows("aaa_rows", 3, 1), outbox: vec![outbox(0)], offsets: vec![position(0, 1)], epoch: None, state: None }).await.unwrap();
        sqlx::query("DROP TABLE zzz_rows").execute(store.pool()).await.unwrap();

        let mut upserts = rows("aaa_rows", 3, 2);
        upserts.extend(rows("zzz_rows", 3, 1));
        let err = store.commit(StoreCommit { topology: "mid".into(), upserts, outbox: vec![outbox(1)], offsets: vec![position(0, 2)], epoch: None, state: None }).await.unwrap_err();
        assert!(matches!(&err, StoreError::Database { operation, .. } if operation.contains("zzz_rows")), "{err}");
        assert!(store.dump_table(&a).await.unwrap().iter().all(|r| r["version"] == 1), "first table's upserts rolled back");
        assert_eq!(store.load_offsets("mid").await.unwrap().get(&("ig.ingest.entities".to_string(), 0)), Some(&1));
        assert_eq!(store.next_outbox_seq("mid").await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn concurrent_migrations_of_the_same_tables_both_succeed() {
    with_store(
        "concurrent_migrations_of_the_same_tables_both_succeed",
        |store, schema| async move {
            let other = PostgresStore::connect(&database_url(), Some(&schema))
                .await
                .unwrap();
            let tables: Vec<_> = ["race_a", "race_b", "race_c", "race_d"]
                .into_iter()
                .map(spec)
                .collect();
            let (x, y) = tokio::join!(store.migrate(&tables), other.migrate(&tables));
            x.unwrap();
            y.unwrap();
            other.close().await;
        },
    )
    .await;
}

#[tokio::test]
async fn concurrent_commits_of_one_topology_fail_with_an_outbox_sequence_error() {
    with_store(
        "concurrent_commits_of_one_topology_fail_with_an_outbox_sequence_error",
        |store, _| async move {
            // A zombie and its replacement both commit outbox seq 0.
            let commit = || StoreCommit {
                topology: "zombie".into(),
                outbox: vec![outbox(0)],
                ..Default::default()
            };
            let (x, y) = tokio::join!(store.commit(commit()), store.commit(commit()));
            let errors: Vec<_> = [x, y].into_iter().filter_map(Result::err).collect();
            assert_eq!(errors.len(), 1, "exactly one commit wins");
            assert!(
                matches!(
                    errors[0],
                    StoreError::OutboxSequence {
                        expected: 1,
                        got: 0,
                        ..
                    }
                ),
                "{}",
                errors[0]
            );
        },
    )
    .await;
}

#[tokio::test]
async fn unreachable_server_is_a_connect_error_without_the_password() {
    let err = PostgresStore::connect("postgres://conductor:s3cret@127.0.0.1:1/none", None)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::Connect {
                backend: "postgres",
                ..
            }
        ),
        "{text}"
    );
    assert!(
        !text.contains("s3cret") && text.contains("conductor:***@127.0.0.1:1"),
        "{text}"
    );
}

/// The retry/halt decision keys off the kind a driver error maps to, so
/// check the mapping on errors a real server gives.
#[tokio::test]
async fn maps_real_server_errors_to_retryable_or_permanent() {
    use conductor_connectors::sql::db_error;
    use conductor_engine::store::StoreErrorKind;
    use sqlx::{Connection, PgConnection};
    with_store(
        "maps_real_server_errors_to_retryable_or_permanent",
        |store, _| async move {
            // A missing table: permanent.
            let e = sqlx::query("SELECT * FROM no_such_table_here")
                .execute(store.pool())
                .await
                .unwrap_err();
            let mapped = db_error("select", e);
            assert_eq!(mapped.kind(), StoreErrorKind::Permanent, "{mapped}");
            assert!(
                std::error::Error::source(&mapped).is_some(),
                "the driver error is kept as source"
            );
            // A bad value (division by zero, SQLSTATE 22012): permanent.
            let e = sqlx::query("SELECT 1 / 0")
                .execute(store.pool())
                .await
                .unwrap_err();
            assert_eq!(db_error("select", e).kind(), StoreErrorKind::Permanent);
            // A connection the server dropped (as on a restart or failover): retryable.
            let mut victim = PgConnection::connect(&database_url()).await.unwrap();
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut victim)
                .await
                .unwrap();
            let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert!(killed);
            let e = sqlx::query("SELECT 1")
                .execute(&mut victim)
                .await
                .unwrap_err();
            let mapped = db_error("select", e);
            assert_eq!(mapped.kind(), StoreErrorKind::Retryable, "{mapped}");
        },
    )
    .await;
}

/// The state contract on Postgres: snapshots stored with their batch (BYTEA),
/// and a restart at any batch boundary (from the snapshot, or warmed up)
/// ends with the tables and the state of a straight run. Each run gets a
/// schema of its own, dropped at the end.
#[tokio::test]
async fn stateful_restart_at_any_batch_boundary_equals_a_straight_run() {
    use conductor_engine::testing::*;
    use std::sync::Arc;
    with_store(
        "stateful_restart_at_any_batch_boundary_equals_a_straight_run",
        |creator, schema| async move {
            let drop_schema = |s: String| {
                let pool = creator.pool().clone();
                async move {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS \"{s}\" CASCADE"
                    )))
                    .execute(&pool)
                    .await
                    .unwrap();
                }
            };
            let runs = check_topology_restarts(
                RestartCheck {
                    config: counts_topology("counts", "ig.ingest.entities"),
                    events: counting_events(40, 6),
                    partitions: 2,
                },
                |v| Box::new(CountsPerKeyProcessor::with_format_version(v)),
                |run| {
                    let schema = schema.clone();
                    let drop_previous =
                        (run > 0).then(|| drop_schema(format!("{schema}_r{}", run - 1)));
                    async move {
                        if let Some(d) = drop_previous {
                            d.await;
                        }
                        Arc::new(
                            PostgresStore::connect(
                                &database_url(),
                                Some(&format!("{schema}_r{run}")),
                            )
                            .await
                            .unwrap(),
                        )
                    }
                },
            )
            .await;
            assert!(runs > 10, "{runs} runs");
            drop_schema(format!("{schema}_r{}", runs - 1)).await;
        },
    )
    .await;
}
