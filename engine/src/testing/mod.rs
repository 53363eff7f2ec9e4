//! Contract checks that every store and processor implementation runs in its
//! own tests (see CONVENTIONS.md: "write the contract before the components").
//! They panic with a message naming the broken rule.

use crate::log::{InputPosition, SourcePosition};
use crate::processor::{Effect, Processor};
use crate::projection::{ColumnSpec, ColumnType, RowUpsert, SqlValue, TableSpec};
use crate::store::{OutboxRecord, ProjectionStore, StoreCommit, StoreError, TopologyControl};
use conductor_schemas::Event;

mod processors;
mod restarts;
mod telemetry;

pub use processors::{
    CountsPerKeyProcessor, GraphTestProcessor, LatestVersionProcessor, TEST_GRAPH,
    key_counts_table, latest_versions_table,
};
pub use restarts::{RestartCheck, check_topology_restarts};
pub use telemetry::{assert_sink_telemetry, assert_topology_telemetry};

/// A table with one column of every type, named `name`.
pub fn contract_table(name: &'static str) -> TableSpec {
    TableSpec {
        text_index: None,
        name,
        key: vec![
            ColumnSpec {
                name: "tenant_id",
                ty: ColumnType::Text,
                nullable: false,
            },
            ColumnSpec {
                name: "id",
                ty: ColumnType::Text,
                nullable: false,
            },
        ],
        columns: vec![
            ColumnSpec {
                name: "label",
                ty: ColumnType::Text,
                nullable: true,
            },
            ColumnSpec {
                name: "count",
                ty: ColumnType::BigInt,
                nullable: false,
            },
            ColumnSpec {
                name: "deleted",
                ty: ColumnType::Bool,
                nullable: false,
            },
            ColumnSpec {
                name: "attributes",
                ty: ColumnType::Json,
                nullable: false,
            },
            ColumnSpec {
                name: "updated_at",
                ty: ColumnType::Timestamp,
                nullable: false,
            },
        ],
        indexes: vec![vec!["tenant_id", "label"]],
    }
}

fn row(table: &'static str, id: &str, version: i64, label: Option<&str>) -> RowUpsert {
    RowUpsert {
        table,
        key: vec!["acme".into(), id.into()],
        version,
        values: vec![
            label.map_or(SqlValue::Null, |l| SqlValue::Text(l.into())),
            SqlValue::BigInt(version * 10),
            SqlValue::Bool(false),
            SqlValue::Json(
                serde_json::json!({"given_name": "Ada", "n": version, "nested": {"ok": true}}),
            ),
            SqlValue::Timestamp(
                chrono::DateTime::from_timestamp_micros(1_770_000_000_123_456 + version)
                    .unwrap_or_default(),
            ),
        ],
        deleted: false,
    }
}

fn outbox(seq: i64, topology: &str) -> OutboxRecord {
    OutboxRecord {
        seq,
        topic: format!("ig.changefeed.{topology}"),
        key: Some(format!("acme/{seq}").into_bytes()),
        value: vec![0, 159, 146, 150, seq as u8], // not UTF-8 on purpose
        headers: vec![crate::log::Header {
            key: "ig-change-id".into(),
            value: format!("c{seq}").into_bytes(),
        }],
        source: SourcePosition {
            topic: "ig.ingest.entities".into(),
            partition: 2,
            offset: 100 + seq,
        },
        source_index: (seq % 3) as u32,
    }
}

/// The name of the store contract's DOUBLE table for `table` (leaked once
/// per call: table names are `&'static str`; the contract runs a few times).
fn doubles_table_name(table: &str) -> &'static str {
    Box::leak(format!("{table}_doubles").into_boxed_str())
}

/// The name of the store contract's VECTOR table for `table` (leaked like
/// [`doubles_table_name`]).
fn vectors_table_name(table: &str) -> &'static str {
    Box::leak(format!("{table}_vectors").into_boxed_str())
}

/// The table [`store_contract`] checks [`ColumnType::Vector`] columns on
/// (named after `table`): the contract's key, a nullable vector.
pub fn vectors_table(table: &'static str) -> TableSpec {
    TableSpec {
        text_index: None,
        name: vectors_table_name(table),
        key: contract_table(table).key,
        columns: vec![ColumnSpec {
            name: "embedding",
            ty: ColumnType::Vector,
            nullable: true,
        }],
        indexes: vec![],
    }
}

/// Vectors every store must keep bit for bit, by id: a typical embedding,
/// awkward values (subnormal, extremes, negative zero, values with no short
/// decimal form), a one-element and an empty vector.
pub fn contract_vectors() -> Vec<(&'static str, Vec<f32>)> {
    vec![
        (
            "a",
            (0..384).map(|i| ((i as f32) * 0.37).sin() / 7.0).collect(),
        ),
        (
            "b",
            vec![
                0.1,
                -0.0,
                1e-45,
                f32::MIN_POSITIVE,
                f32::MAX,
                f32::MIN,
                1.0 / 3.0,
                -123_456.79,
            ],
        ),
        ("c", vec![0.5]),
        ("d", vec![]),
    ]
}

/// A row of `table` (a [`vectors_table`]) holding `v`.
pub fn vector_row(table: &'static str, id: &str, version: i64, v: Option<Vec<f32>>) -> RowUpsert {
    RowUpsert {
        table,
        key: vec!["acme".into(), id.into()],
        version,
        values: vec![v.map_or(SqlValue::Null, SqlValue::Vector)],
        deleted: false,
    }
}

/// Checks that `dumped` (rows of [`vectors_table`], in key order) holds
/// exactly `expected`, element for element, rendered as the memory store
/// renders a vector.
pub fn assert_vectors_dumped(dumped: &[serde_json::Value], expected: &[(&str, Option<Vec<f32>>)]) {
    assert_eq!(
        dumped.len(),
        expected.len(),
        "one row per vector: {dumped:?}"
    );
    for (row, (id, v)) in dumped.iter().zip(expected) {
        assert_eq!(row["id"], *id);
        let cell = &row["embedding"];
        let Some(v) = v else {
            assert_eq!(*cell, serde_json::Value::Null, "row {id}: a NULL vector");
            continue;
        };
        assert_eq!(
            *cell,
            crate::store::memory::value_to_json(&SqlValue::Vector(v.clone())),
            "row {id}: a vector dumps as a JSON array of its f32s"
        );
        let back: Vec<u32> = cell
            .as_array()
            .unwrap_or_else(|| panic!("row {id}: a vector dumps as an array, got {cell}"))
            .iter()
            .map(|n| (n.as_f64().expect("a number") as f32).to_bits())
            .collect();
        let bits: Vec<u32> = v.iter().map(|f| f.to_bits()).collect();
        assert_eq!(back, bits, "row {id}: vectors round-trip bit for bit");
    }
}

/// Checks a store's keyword search over a table with a text index: any of
/// the terms matches, the row matching more ranks first, tenants stay
/// apart, deleted rows are not found, an update or delete is reflected at
/// once (the index moves with the commit), migrations are idempotent (no
/// row found twice), numbers match as written, punctuation in a term is
/// dropped, and a table without a text index is a clear error.
/// `table` must be a fresh table name.
pub async fn keyword_search_contract(store: &dyn ProjectionStore, table: &'static str) {
    use crate::projection::TextIndex;
    let col = |name, ty| ColumnSpec {
        name,
        ty,
        nullable: false,
    };
    let spec = TableSpec {
        name: table,
        key: vec![
            col("tenant_id", ColumnType::Text),
            col("id", ColumnType::Text),
        ],
        columns: vec![
            col("attrs", ColumnType::Json),
            col("deleted", ColumnType::Bool),
        ],
        indexes: Vec::new(),
        text_index: Some(TextIndex {
            json: "attrs",
            tenant: "tenant_id",
            id: "id",
            deleted: Some("deleted"),
        }),
    };
    let row =
        |tenant: &str, id: &str, version: i64, attrs: serde_json::Value, deleted: bool| RowUpsert {
            table,
            key: vec![tenant.into(), id.into()],
            version,
            values: vec![SqlValue::Json(attrs), SqlValue::Bool(deleted)],
            deleted,
        };
    let commit = |upserts: Vec<RowUpsert>| StoreCommit {
        topology: format!("{table}_writer"),
        upserts,
        ..Default::default()
    };
    store
        .migrate(std::slice::from_ref(&spec))
        .await
        .expect("migrate");
    // Rows written before a second migration: it must not index them twice.
    store
        .commit(commit(vec![
            row(
                "t1",
                "a",
                1,
                serde_json::json!({"given_name": "Jane", "surname": "Smith", "dob": "19700101"}),
                false,
            ),
            row(
                "t1",
                "b",
                1,
                serde_json::json!({"given_name": "John", "surname": "Smith"}),
                false,
            ),
            row(
                "t1",
                "c",
                1,
                serde_json::json!({"name": "Jane Doe", "age": 41}),
                false,
            ),
            row("t1", "d", 1, serde_json::json!({"name": "Jane Gone"}), true),
            row(
                "t2",
                "a",
                1,
                serde_json::json!({"given_name": "Jane", "surname": "Smith"}),
                false,
            ),
        ]))
        .await
        .expect("commit rows");
    store
        .migrate(std::slice::from_ref(&spec))
        .await
        .expect("migrations must be idempotent");
    let ask = |tenant: &'static str, terms: &'static [&'static str]| {
        let spec = spec.clone();
        async move {
            let terms: Vec<String> = terms.iter().map(|t| t.to_string()).collect();
            store
                .keyword_search(&spec, tenant, &terms, 10)
                .await
                .expect("keyword search")
                .into_iter()
                .map(|h| h.id)
                .collect::<Vec<_>>()
        }
    };
    let both = ask("t1", &["jane", "smith"]).await;
    assert_eq!(
        both.first().map(String::as_str),
        Some("a"),
        "two terms beat one: {both:?}"
    );
    let mut sorted = both.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["a", "b", "c"],
        "any term matches, deleted rows are not found, tenants apart"
    );
    assert_eq!(
        ask("t1", &["19700101"]).await,
        ["a"],
        "numbers match as written"
    );
    assert_eq!(ask("t1", &["41"]).await, ["c"], "number values are indexed");
    assert_eq!(
        ask("t1", &["JANE!", "doe"])
            .await
            .first()
            .map(String::as_str),
        Some("c")
    );
    assert_eq!(ask("t2", &["jane"]).await, ["a"]);
    assert!(ask("t1", &["nobody"]).await.is_empty());
    assert!(
        ask("t1", &["!!"]).await.is_empty(),
        "no term left: no match"
    );

    store
        .commit(commit(vec![
            row(
                "t1",
                "b",
                2,
                serde_json::json!({"given_name": "Bob"}),
                false,
            ),
            row("t1", "c", 2, serde_json::json!({}), true),
        ]))
        .await
        .expect("commit changes");
    assert!(
        ask("t1", &["john"]).await.is_empty(),
        "an update replaces the text"
    );
    assert_eq!(ask("t1", &["bob"]).await, ["b"]);
    assert!(
        ask("t1", &["doe"]).await.is_empty(),
        "a delete takes the row out"
    );

    let plain = contract_table(Box::leak(format!("{table}_plain").into_boxed_str()));
    store
        .migrate(std::slice::from_ref(&plain))
        .await
        .expect("migrate");
    assert!(
        store
            .keyword_search(&plain, "t1", &["jane".to_string()], 10)
            .await
            .is_err(),
        "a table without a text index can't be searched"
    );
}

/// Checks a [`ProjectionStore`]: migrations, version guard, atomic commit of
/// rows + outbox + offsets, outbox reads/deletes, control rows, dumps.
/// `topology` must be unique to this run; `table` must be a fresh table name.
pub async fn store_contract(store: &dyn ProjectionStore, topology: &str, table: &'static str) {
    let spec = contract_table(table);
    store
        .migrate(std::slice::from_ref(&spec))
        .await
        .expect("migrate");
    store
        .migrate(std::slice::from_ref(&spec))
        .await
        .expect("migrations must be idempotent");

    assert!(
        store.load_offsets(topology).await.unwrap().is_empty(),
        "fresh topology has no offsets"
    );
    assert_eq!(
        store.next_outbox_seq(topology).await.unwrap(),
        0,
        "outbox seq starts at 0"
    );
    assert!(
        store.table_is_empty(&spec).await.unwrap(),
        "a new table is empty"
    );

    let pos = |o: i64| {
        vec![InputPosition {
            topic: "ig.ingest.entities".into(),
            partition: 2,
            next_offset: o,
        }]
    };
    store
        .commit(StoreCommit {
            topology: topology.into(),
            upserts: vec![
                row(table, "p1", 3, Some("first")),
                row(table, "p2", 1, None),
            ],
            outbox: vec![outbox(0, topology), outbox(1, topology)],
            offsets: pos(10),
            epoch: None,
            state: None,
        })
        .await
        .expect("commit");
    let offsets = store.load_offsets(topology).await.unwrap();
    assert_eq!(
        offsets.get(&("ig.ingest.entities".to_string(), 2)),
        Some(&10),
        "offsets stored with the batch"
    );
    assert_eq!(store.next_outbox_seq(topology).await.unwrap(), 2);
    assert!(
        !store.table_is_empty(&spec).await.unwrap(),
        "a table with rows is not empty"
    );

    // Version guard: older and equal versions change nothing; newer wins.
    store
        .commit(StoreCommit {
            topology: topology.into(),
            upserts: vec![
                row(table, "p1", 2, Some("older")),
                row(table, "p2", 2, Some("newer")),
            ],
            outbox: vec![],
            offsets: pos(12),
            epoch: None,
            state: None,
        })
        .await
        .unwrap();
    store
        .commit(StoreCommit {
            topology: topology.into(),
            upserts: vec![row(table, "p1", 3, Some("same"))],
            outbox: vec![],
            offsets: pos(13),
            epoch: None,
            state: None,
        })
        .await
        .unwrap();
    let rows = store.dump_table(&spec).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], "p1", "dump is ordered by key");
    assert_eq!(
        rows[0]["label"], "first",
        "older/equal versions are ignored"
    );
    assert_eq!(rows[0]["version"], 3);
    assert_eq!(rows[1]["label"], "newer");
    assert_eq!(rows[1]["count"], 20);
    assert_eq!(rows[1]["deleted"], false);
    assert_eq!(
        rows[1]["attributes"]["nested"]["ok"], true,
        "JSON columns round-trip"
    );
    assert_eq!(
        rows[1]["updated_at"], "2026-02-02T02:40:00.123458Z",
        "timestamps dump as RFC 3339 with micros"
    );
    assert_eq!(rows[0]["label"], serde_json::Value::String("first".into()));

    let versions = store
        .current_versions(
            &spec,
            &[
                vec!["acme".into(), "p1".into()],
                vec!["acme".into(), "nope".into()],
            ],
        )
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[&vec!["acme".to_string(), "p1".to_string()]], 3);

    // A commit that fails applies nothing (wrong outbox seq).
    let err = store
        .commit(StoreCommit {
            topology: topology.into(),
            upserts: vec![row(table, "p3", 1, Some("never"))],
            outbox: vec![outbox(7, topology)],
            offsets: pos(99),
            epoch: None,
            state: None,
        })
        .await;
    assert!(
        err.is_err(),
        "a commit with a gap in the outbox seq must fail"
    );
    assert_eq!(
        store.dump_table(&spec).await.unwrap().len(),
        2,
        "failed commit left no row"
    );
    assert_eq!(
        store
            .load_offsets(topology)
            .await
            .unwrap()
            .get(&("ig.ingest.entities".to_string(), 2)),
        Some(&13),
        "failed commit left offsets"
    );

    // Outbox: read in seq order with bytes intact, then delete relayed ones.
    let got = store.read_outbox(topology, 0, 10).await.unwrap();
    assert_eq!(
        got,
        vec![outbox(0, topology), outbox(1, topology)],
        "outbox records round-trip exactly"
    );
    assert_eq!(store.read_outbox(topology, 1, 10).await.unwrap().len(), 1);
    assert_eq!(store.delete_outbox(topology, 0..1).await.unwrap(), 1);
    assert_eq!(
        store.delete_outbox(topology, 2..5).await.unwrap(),
        0,
        "a range deletes only its own seqs"
    );
    assert_eq!(
        store.read_outbox(topology, 0, 10).await.unwrap(),
        vec![outbox(1, topology)]
    );
    assert_eq!(
        store.next_outbox_seq(topology).await.unwrap(),
        2,
        "deleting does not move the seq"
    );

    // reset-offsets replaces the positions.
    store
        .store_offsets(
            topology,
            &[InputPosition {
                topic: "ig.ingest.entities".into(),
                partition: 0,
                next_offset: 5,
            }],
        )
        .await
        .unwrap();
    let offsets = store.load_offsets(topology).await.unwrap();
    assert_eq!(offsets.len(), 1);
    assert_eq!(
        offsets.get(&("ig.ingest.entities".to_string(), 0)),
        Some(&5)
    );

    // Control rows and the commit fence.
    let start = store.control(topology).await.unwrap();
    assert_eq!(start, TopologyControl::default(), "fresh control row");
    let fenced_commit = |epoch: Option<i64>, next: i64| StoreCommit {
        topology: topology.to_string(),
        offsets: vec![InputPosition {
            topic: "ig.ingest.entities".into(),
            partition: 0,
            next_offset: next,
        }],
        epoch,
        ..Default::default()
    };
    store
        .commit(fenced_commit(Some(start.epoch), 6))
        .await
        .expect("a commit under the current epoch lands");
    let paused = store.set_paused(topology, true).await.unwrap();
    assert!(paused.paused && paused.epoch > start.epoch, "{paused:?}");
    assert_eq!(store.control(topology).await.unwrap(), paused);
    let err = store
        .commit(fenced_commit(Some(paused.epoch), 7))
        .await
        .expect_err("a paused topology takes no commit");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    let resumed = store.set_paused(topology, false).await.unwrap();
    assert!(!resumed.paused && resumed.epoch > paused.epoch);
    let err = store
        .commit(fenced_commit(Some(start.epoch), 7))
        .await
        .expect_err("a batch folded before the pause must not land after it");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert_eq!(
        store.load_offsets(topology).await.unwrap()[&("ig.ingest.entities".to_string(), 0)],
        6,
        "fenced commits change nothing"
    );
    store
        .commit(fenced_commit(Some(resumed.epoch), 7))
        .await
        .expect("the new epoch commits");

    // State snapshots: stored with their batch, kept until replaced, and a
    // refused commit leaves the stored one as it was.
    assert_eq!(
        store
            .load_state(topology, crate::store::SCOPE_ALL)
            .await
            .unwrap(),
        None
    );
    let state = |bytes: &[u8], next: i64| crate::store::StateSnapshot {
        scope: crate::store::SCOPE_ALL.into(),
        format_version: 3,
        bytes: bytes.to_vec(),
        positions: [
            (("ig.ingest.entities".to_string(), 0), next),
            (("ig.ingest.other".to_string(), 1), 4),
        ]
        .into_iter()
        .collect(),
    };
    let control = store.control(topology).await.unwrap();
    let with_state = |bytes: &[u8], next: i64, epoch: i64| StoreCommit {
        topology: topology.to_string(),
        offsets: vec![InputPosition {
            topic: "ig.ingest.entities".into(),
            partition: 0,
            next_offset: next,
        }],
        epoch: Some(epoch),
        state: Some(state(bytes, next)),
        ..Default::default()
    };
    store
        .commit(with_state(b"\x00first\xff", 20, control.epoch))
        .await
        .unwrap();
    assert_eq!(
        store
            .load_state(topology, crate::store::SCOPE_ALL)
            .await
            .unwrap(),
        Some(state(b"\x00first\xff", 20)),
        "state bytes and positions come back as stored"
    );
    assert_eq!(
        store
            .load_state(topology, "ig.ingest.entities/0")
            .await
            .unwrap(),
        None,
        "scopes are apart"
    );
    store
        .commit(with_state(b"second", 21, control.epoch))
        .await
        .unwrap();
    store
        .commit(StoreCommit {
            topology: topology.to_string(),
            offsets: vec![InputPosition {
                topic: "ig.ingest.entities".into(),
                partition: 0,
                next_offset: 22,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let err = store
        .commit(with_state(b"fenced", 23, control.epoch - 1))
        .await
        .expect_err("an old epoch is fenced");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert_eq!(
        store
            .load_state(topology, crate::store::SCOPE_ALL)
            .await
            .unwrap(),
        Some(state(b"second", 21)),
        "replaced by a newer snapshot, kept by a commit without one, untouched by a refused one"
    );

    // DOUBLE columns: values round-trip, a non-finite one is stored as NULL.
    let doubles = TableSpec {
        text_index: None,
        name: doubles_table_name(table),
        key: spec.key.clone(),
        columns: vec![ColumnSpec {
            name: "ratio",
            ty: ColumnType::Double,
            nullable: true,
        }],
        indexes: vec![],
    };
    store
        .migrate(std::slice::from_ref(&doubles))
        .await
        .expect("migrate a table with a DOUBLE column");
    let ratio = |id: &str, v: f64| RowUpsert {
        table: doubles.name,
        key: vec!["acme".into(), id.into()],
        version: 1,
        values: vec![SqlValue::Double(v)],
        deleted: false,
    };
    store
        .commit(StoreCommit {
            topology: topology.into(),
            upserts: vec![ratio("a", 0.125 - 0.1), ratio("b", f64::NAN)],
            ..Default::default()
        })
        .await
        .expect("commit doubles");
    let rows = store.dump_table(&doubles).await.unwrap();
    assert_eq!(rows[0]["ratio"], 0.125 - 0.1, "doubles round-trip exactly");
    assert_eq!(
        rows[1]["ratio"],
        serde_json::Value::Null,
        "NaN is stored as NULL"
    );

    // VECTOR columns: f32s round-trip bit for bit, empty and NULL vectors
    // stay apart, a newer version replaces the vector.
    let vectors = vectors_table(table);
    store
        .migrate(std::slice::from_ref(&vectors))
        .await
        .expect("migrate a table with a VECTOR column");
    store
        .migrate(std::slice::from_ref(&vectors))
        .await
        .expect("migrations of a VECTOR column must be idempotent");
    let mut expected: Vec<(&str, Option<Vec<f32>>)> = contract_vectors()
        .into_iter()
        .map(|(id, v)| (id, Some(v)))
        .collect();
    expected.push(("e", None));
    store
        .commit(StoreCommit {
            topology: topology.into(),
            upserts: expected
                .iter()
                .map(|(id, v)| vector_row(vectors.name, id, 1, v.clone()))
                .collect(),
            ..Default::default()
        })
        .await
        .expect("commit vectors");
    assert_vectors_dumped(&store.dump_table(&vectors).await.unwrap(), &expected);
    store
        .commit(StoreCommit {
            topology: topology.into(),
            upserts: vec![
                vector_row(vectors.name, "c", 2, Some(vec![-0.25, 4.0])),
                vector_row(vectors.name, "d", 1, Some(vec![9.0])),
            ],
            ..Default::default()
        })
        .await
        .expect("commit newer vectors");
    expected[2].1 = Some(vec![-0.25, 4.0]);
    assert_vectors_dumped(&store.dump_table(&vectors).await.unwrap(), &expected);

    // A snapshot holds the offsets and the rows together.
    let snap = store
        .snapshot(topology, std::slice::from_ref(&spec))
        .await
        .unwrap();
    assert_eq!(snap.offsets, store.load_offsets(topology).await.unwrap());
    assert_eq!(snap.tables, vec![store.dump_table(&spec).await.unwrap()]);
}

/// Checks a [`Processor`] against the contract: deterministic (two fresh
/// instances give identical effects for the same events), every upsert
/// names a declared table with the right arity, and — for a stateful
/// processor — "snapshot at any event boundary + restore into a fresh
/// processor + fold of the rest = straight fold" (same effects, same final
/// snapshot) and "restart at any boundary (fresh processor warmed up on the
/// events before it) = straight run". A stateless processor passes the last
/// two trivially. Folds `events` O(n²) times: keep them to a few dozen.
pub fn check_processor_contract<P: Processor>(mut make: impl FnMut() -> P, events: &[Event]) {
    let (mut a, mut b) = (make(), make());
    let tables = a.tables();
    let mut straight = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let ea = a.process(e);
        let eb = b.process(e);
        assert_eq!(
            ea,
            eb,
            "processor {} is not deterministic at event {i}",
            a.name()
        );
        for effect in ea.clone().unwrap_or_default() {
            let u = match effect {
                Effect::Upsert(u) => Some(u),
                Effect::Graph(m) => {
                    let graph = a.graph().unwrap_or_else(|| {
                        panic!(
                            "processor {} emits a graph mutation but declares no graph",
                            a.name()
                        )
                    });
                    if let Some(problem) = m.problem() {
                        panic!("processor {}: {problem}", a.name());
                    }
                    Some(graph.row(&m))
                }
                Effect::Emit(_) => None,
            };
            if let Some(u) = u {
                let spec = tables
                    .iter()
                    .find(|t| t.name == u.table)
                    .unwrap_or_else(|| {
                        panic!("processor {} writes undeclared table {}", a.name(), u.table)
                    });
                assert_eq!(u.key.len(), spec.key.len(), "key arity of {}", u.table);
                assert_eq!(
                    u.values.len(),
                    spec.columns.len(),
                    "value arity of {}",
                    u.table
                );
            }
        }
        straight.push(ea);
    }
    let final_state = a.state().map(|s| s.fingerprint());
    let name = a.name().to_string();
    for k in 0..=events.len() {
        let mut first = make();
        for e in &events[..k] {
            let _ = first.process(e);
        }
        // Snapshot at k, restored into a fresh processor.
        if let Some(state) = first.state() {
            let bytes = state.snapshot();
            let mut restored = make();
            restored
                .state()
                .expect("a fresh instance of a stateful processor has state")
                .restore(&bytes)
                .unwrap_or_else(|e| {
                    panic!("processor {name} can't read its own snapshot at event {k}: {e}")
                });
            let rest: Vec<_> = events[k..].iter().map(|e| restored.process(e)).collect();
            assert_eq!(
                rest,
                straight[k..],
                "processor {name}: snapshot at event {k} + restore + fold of the rest differs from a straight fold"
            );
            assert_eq!(
                restored.state().map(|s| s.fingerprint()),
                final_state,
                "processor {name}: state after a restore at event {k} differs"
            );
        }
        // Restart at k: a fresh processor warmed up on what came before.
        let mut warmed = make();
        if let Some(state) = warmed.state() {
            state.clear();
        }
        for e in &events[..k] {
            let _ = warmed.process(e);
        }
        let rest: Vec<_> = events[k..].iter().map(|e| warmed.process(e)).collect();
        assert_eq!(
            rest,
            straight[k..],
            "processor {name}: a restart at event {k} differs from a straight run"
        );
        assert_eq!(
            warmed.state().map(|s| s.fingerprint()),
            final_state,
            "processor {name}: state after a restart at event {k} differs"
        );
    }
}

/// Appends a JSON event (validated; panics on an invalid one) to `topic`,
/// keyed and partitioned as `conductor produce` does.
pub async fn pipe_json(log: &dyn crate::log::Log, topic: &str, json: &str) {
    use crate::envelope::{Encoding, event_key, event_record};
    let event = conductor_schemas::codec::decode_json(json.as_bytes(), None)
        .expect("pipe_json needs a valid event");
    let n = log
        .describe_topic(topic)
        .await
        .expect("source topic")
        .partitions
        .len() as i32;
    let p = crate::log::partition_for_key(event_key(&event).as_bytes(), n);
    log.append(topic, p, vec![event_record(&event, Encoding::Json)])
        .await
        .expect("append");
}

/// A topology of [`LatestVersionProcessor`] reading `topic`.
pub fn latest_version_topology(name: &str, topic: &str) -> crate::runtime::TopologyConfig {
    let text = format!(
        "name = \"{name}\"\nprocessor = \"latest_version\"\n[sources]\ntopics = [\"{topic}\"]\n[batch]\nlinger_ms = 0\n"
    );
    crate::runtime::parse_topology(&text, &["latest_version"]).expect("test topology")
}

/// A topology of [`CountsPerKeyProcessor`] reading `topic` in small batches
/// (4 events), snapshotting every 3 batches: restarts land both on and
/// between snapshots.
pub fn counts_topology(name: &str, topic: &str) -> crate::runtime::TopologyConfig {
    let text = format!(
        "name = \"{name}\"\nprocessor = \"counts_per_key\"\n[sources]\ntopics = [\"{topic}\"]\n[batch]\nmax_events = 4\nlinger_ms = 0\n[state]\nsnapshot_every_batches = 3\n"
    );
    crate::runtime::parse_topology(&text, &["counts_per_key"]).expect("test topology")
}

/// A topology of [`GraphTestProcessor`] reading `topic` in batches of `max_events`.
pub fn graph_topology(
    name: &str,
    topic: &str,
    max_events: usize,
) -> crate::runtime::TopologyConfig {
    let text = format!(
        "name = \"{name}\"\nprocessor = \"graph_test\"\n[sources]\ntopics = [\"{topic}\"]\n[batch]\nmax_events = {max_events}\nlinger_ms = 0\n"
    );
    crate::runtime::parse_topology(&text, &["graph_test"]).expect("test topology")
}

/// A graph's history as JSON events for [`GraphTestProcessor`] (tenant
/// `acme`): `entities` nodes of two types, updated, some deleted and some
/// updated again after their delete with a stale version, relationships
/// between them that move their ends, are deleted and come back — every
/// element version-guarded, some changes arriving out of order. The same
/// `seed`, the same events.
pub fn graph_events(entities: usize, seed: u64) -> Vec<String> {
    let mut rng = seed.max(1);
    let mut next = move |n: usize| {
        // xorshift: deterministic without a dependency.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n.max(1) as u64) as usize
    };
    let ty = |i: usize| if i.is_multiple_of(3) { "Org" } else { "Person" };
    let mut events = Vec::new();
    let mut versions = vec![0i64; entities];
    let rels = entities;
    let mut rel_versions = vec![0i64; rels];
    let steps = entities * 6;
    for step in 0..steps {
        match next(10) {
            0..=4 => {
                let i = next(entities);
                versions[i] += 1;
                let stale = versions[i] > 2 && next(6) == 0;
                let v = if stale { versions[i] - 2 } else { versions[i] };
                events.push(format!(
                    r#"{{"tenant":"acme","kind":"EntityUpserted","subject":"e{i}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"{}","version":{v},"attributes":{{"name":"n{i} v{v}","step":{step},"score":{}.5,"flag":{}}}}}}}"#,
                    ty(i),
                    step % 7,
                    step % 2 == 0
                ));
            }
            5 => {
                let i = next(entities);
                versions[i] += 1;
                events.push(format!(
                    r#"{{"tenant":"acme","kind":"EntityDeleted","subject":"e{i}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"{}","version":{}}}}}"#,
                    ty(i),
                    versions[i]
                ));
            }
            _ => {
                let r = next(rels);
                rel_versions[r] += 1;
                let (src, dst) = (next(entities), next(entities));
                let deleted = next(5) == 0;
                events.push(format!(
                    r#"{{"tenant":"acme","kind":"RelationshipUpserted","subject":"r{r}","occurred_at":"2026-02-01T12:00:00Z","data":{{"rel_id":"r{r}","src":"e{src}","dst":"e{dst}","rel_type":"{}","version":{},"attributes":{{"src_type":"{}","dst_type":"{}","weight":{step},"deleted":{deleted}}}}}}}"#,
                    if r.is_multiple_of(2) { "KNOWS" } else { "WORKS_WITH" },
                    rel_versions[r],
                    ty(src),
                    ty(dst)
                ));
            }
        }
    }
    events
}

/// `n` `EntityUpserted` events over `keys` subjects of tenant `acme`, with
/// versions rising per subject.
pub fn counting_events(n: usize, keys: usize) -> Vec<String> {
    (0..n)
        .map(|i| entity_upserted_json("acme", &format!("s{}", i % keys), (i / keys) as i64 + 1))
        .collect()
}

/// An `EntityUpserted` event as JSON, for piping into a test log.
pub fn entity_upserted_json(tenant: &str, subject: &str, version: i64) -> String {
    format!(
        r#"{{"tenant":"{tenant}","kind":"EntityUpserted","subject":"{subject}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"Person","version":{version},"attributes":{{}}}}}}"#
    )
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_meets_the_store_contract() {
        let store = crate::store::memory::MemoryStore::new();
        super::store_contract(&store, "contract", "contract_rows").await;
    }
}
