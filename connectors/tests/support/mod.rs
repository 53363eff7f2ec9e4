//! Helpers shared by the SQLite and Postgres store tests.
//!
//! Each test binary uses a subset of these, hence the `dead_code` allowance.
#![allow(dead_code)]

use conductor_engine::log::{Header, InputPosition, SourcePosition};
use conductor_engine::projection::{RowUpsert, SqlValue, TableSpec};
use conductor_engine::store::memory::MemoryStore;
use conductor_engine::store::{OutboxRecord, ProjectionStore, StoreCommit, table_digest};
use conductor_engine::testing::contract_table;

/// A row of [`contract_table`] `table` with key (`tenant`, `id`).
pub fn row(
    table: &'static str,
    tenant: &str,
    id: &str,
    version: i64,
    label: Option<&str>,
) -> RowUpsert {
    RowUpsert {
        table,
        key: vec![tenant.into(), id.into()],
        version,
        values: vec![
            label.map_or(SqlValue::Null, |l| SqlValue::Text(l.into())),
            SqlValue::BigInt(version * 10),
            SqlValue::Bool(version % 2 == 0),
            SqlValue::Json(
                serde_json::json!({"id": id, "v": version, "tags": ["a", "b"], "nested": {"ok": true}}),
            ),
            SqlValue::Timestamp(
                chrono::DateTime::from_timestamp_micros(1_770_000_000_000_001 + version)
                    .expect("valid timestamp"),
            ),
        ],
        deleted: false,
    }
}

/// `n` rows `id-00000` … of version `version`.
pub fn rows(table: &'static str, n: usize, version: i64) -> Vec<RowUpsert> {
    (0..n)
        .map(|i| {
            row(
                table,
                "acme",
                &format!("id-{i:05}"),
                version,
                Some(&format!("label {i}")),
            )
        })
        .collect()
}

/// An outbox record with a binary value and header.
pub fn outbox(seq: i64) -> OutboxRecord {
    OutboxRecord {
        seq,
        topic: "ig.changefeed.test".into(),
        key: if seq % 2 == 0 {
            Some(format!("acme/{seq}").into_bytes())
        } else {
            None
        },
        value: vec![0xff, 0x00, seq as u8],
        headers: vec![
            Header {
                key: "ig-change-id".into(),
                value: format!("c{seq}").into_bytes(),
            },
            Header {
                key: "raw".into(),
                value: vec![0x80, 0x81],
            },
        ],
        source: SourcePosition {
            topic: "ig.ingest.entities".into(),
            partition: 1,
            offset: 1000 + seq,
        },
        source_index: u32::MAX - seq as u32,
    }
}

pub fn position(partition: i32, next_offset: i64) -> InputPosition {
    InputPosition {
        topic: "ig.ingest.entities".into(),
        partition,
        next_offset,
    }
}

/// Rows chosen to trip up a backend that renders or orders differently from
/// the memory store: byte-order keys (upper before lower case, non-ASCII
/// last), NULLs, COPY/escape characters, JSON with unsorted keys, big and
/// fractional numbers, timestamps before the epoch and with micros.
pub fn tricky_rows(table: &'static str) -> Vec<RowUpsert> {
    let ts = |micros: i64| {
        SqlValue::Timestamp(
            chrono::DateTime::from_timestamp_micros(micros).expect("valid timestamp"),
        )
    };
    let mk = |tenant: &str,
              id: &str,
              version: i64,
              label: SqlValue,
              json: serde_json::Value,
              t: SqlValue| RowUpsert {
        table,
        key: vec![tenant.into(), id.into()],
        version,
        values: vec![
            label,
            SqlValue::BigInt(-version),
            SqlValue::Bool(version % 3 == 0),
            SqlValue::Json(json),
            t,
        ],
        deleted: false,
    };
    vec![
        mk(
            "acme",
            "b",
            1,
            SqlValue::Text("tab\there\nnewline \\ back".into()),
            serde_json::json!({"z": 1, "a": {"y": [1, 2.5, null]}}),
            ts(0),
        ),
        mk(
            "acme",
            "B",
            2,
            SqlValue::Null,
            serde_json::json!(["x", {"k": "quote\"d"}]),
            ts(-1),
        ),
        mk(
            "acme",
            "ä",
            3,
            SqlValue::Text("ünïcödé ✓".into()),
            serde_json::json!({"big": 9_007_199_254_740_993_i64, "f": 1e20, "neg": -0.125}),
            ts(1_770_000_000_123_456),
        ),
        mk(
            "Acme",
            "a",
            4,
            SqlValue::Text("".into()),
            serde_json::json!(null),
            ts(253_402_300_799_999_999),
        ),
        mk(
            "acme",
            "a b",
            5,
            SqlValue::Text("space key".into()),
            serde_json::json!("just a string"),
            ts(1),
        ),
        mk(
            "acme",
            "_",
            6,
            SqlValue::Text("underscore".into()),
            serde_json::json!({"": "", "emoji": "🦀"}),
            ts(-62_135_596_800_000_000),
        ),
    ]
}

/// Applies the same commits to `store` and to a fresh [`MemoryStore`] and
/// asserts equal dumps and equal table digests.
pub async fn assert_same_as_memory(
    store: &dyn ProjectionStore,
    spec: &TableSpec,
    commits: Vec<StoreCommit>,
) {
    let memory = MemoryStore::new();
    memory
        .migrate(std::slice::from_ref(spec))
        .await
        .expect("memory migrate");
    store
        .migrate(std::slice::from_ref(spec))
        .await
        .expect("migrate");
    for c in commits {
        memory.commit(c.clone()).await.expect("memory commit");
        store.commit(c).await.expect("commit");
    }
    let expected = memory.dump_table(spec).await.expect("memory dump");
    let got = store.dump_table(spec).await.expect("dump");
    assert_eq!(
        got,
        expected,
        "{} dump differs from the memory store's",
        store.backend()
    );
    assert_eq!(
        table_digest(store, spec).await.expect("digest"),
        table_digest(&memory, spec).await.expect("memory digest"),
        "{} table digest differs from the memory store's",
        store.backend()
    );
}

/// Commits for [`assert_same_as_memory`]: the tricky rows, then a batch that
/// mixes older (ignored), equal (ignored) and newer versions and duplicates.
pub fn tricky_commits(table: &'static str) -> Vec<StoreCommit> {
    let first = tricky_rows(table);
    let mut second: Vec<RowUpsert> = Vec::new();
    for (i, mut r) in tricky_rows(table).into_iter().enumerate() {
        r.version += [-1, 0, 1][i % 3];
        r.values[0] = SqlValue::Text(format!("second {i}"));
        second.push(r);
    }
    // The same key twice in one batch: the higher version wins.
    let mut dup_low = row(table, "acme", "dup", 1, Some("dup low"));
    let dup_high = row(table, "acme", "dup", 2, Some("dup high"));
    dup_low.values[0] = SqlValue::Text("dup low".into());
    second.extend([dup_high, dup_low]);
    vec![
        StoreCommit {
            topology: "tricky".into(),
            upserts: first,
            outbox: vec![],
            offsets: vec![position(0, 1)],
            epoch: None,
            state: None,
        },
        StoreCommit {
            topology: "tricky".into(),
            upserts: second,
            outbox: vec![],
            offsets: vec![position(0, 2)],
            epoch: None,
            state: None,
        },
    ]
}

/// The spec every test table uses.
pub fn spec(name: &'static str) -> TableSpec {
    contract_table(name)
}
