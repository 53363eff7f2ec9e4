//! An in-memory [`ProjectionStore`] for tests and the topology test driver.

use super::*;
use crate::projection::SqlValue;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    tables: BTreeMap<String, TableSpec>,
    /// table → key → row
    rows: BTreeMap<String, BTreeMap<Vec<String>, RowUpsert>>,
    offsets: BTreeMap<String, BTreeMap<(String, i32), i64>>,
    outbox: BTreeMap<String, BTreeMap<i64, OutboxRecord>>,
    next_seq: BTreeMap<String, i64>,
    control: BTreeMap<String, TopologyControl>,
    /// (topology, scope) → snapshot.
    state: BTreeMap<(String, String), StateSnapshot>,
}

/// A [`ProjectionStore`] in memory. Cloning shares it.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Renders a value the way every store's `dump_table` does.
pub fn value_to_json(v: &SqlValue) -> serde_json::Value {
    match v {
        SqlValue::Null => serde_json::Value::Null,
        SqlValue::Text(s) => s.clone().into(),
        SqlValue::BigInt(i) => (*i).into(),
        SqlValue::Double(d) => {
            serde_json::Number::from_f64(*d).map_or(serde_json::Value::Null, Into::into)
        }
        SqlValue::Bool(b) => (*b).into(),
        SqlValue::Json(j) => j.clone(),
        SqlValue::Timestamp(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string().into(),
        // Each element as serde_json renders an f32 (non-finite: null).
        SqlValue::Vector(v) => v.iter().copied().map(serde_json::Value::from).collect(),
    }
}

#[async_trait]
impl ProjectionStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn migrate(&self, tables: &[TableSpec]) -> Result<(), StoreError> {
        let mut st = self.lock();
        for t in tables {
            st.tables.insert(t.name.to_string(), t.clone());
            st.rows.entry(t.name.to_string()).or_default();
        }
        Ok(())
    }

    async fn load_offsets(
        &self,
        topology: &str,
    ) -> Result<BTreeMap<(String, i32), i64>, StoreError> {
        Ok(self
            .lock()
            .offsets
            .get(topology)
            .cloned()
            .unwrap_or_default())
    }

    async fn store_offsets(
        &self,
        topology: &str,
        offsets: &[InputPosition],
    ) -> Result<(), StoreError> {
        let mut st = self.lock();
        let map = st.offsets.entry(topology.to_string()).or_default();
        map.clear();
        for p in offsets {
            map.insert((p.topic.clone(), p.partition), p.next_offset);
        }
        Ok(())
    }

    async fn current_versions(
        &self,
        table: &TableSpec,
        keys: &[Vec<String>],
    ) -> Result<HashMap<Vec<String>, i64>, StoreError> {
        let st = self.lock();
        let rows = st
            .rows
            .get(table.name)
            .ok_or_else(|| StoreError::UnknownTable(table.name.to_string()))?;
        Ok(keys
            .iter()
            .filter_map(|k| rows.get(k).map(|r| (k.clone(), r.version)))
            .collect())
    }

    async fn load_state(
        &self,
        topology: &str,
        scope: &str,
    ) -> Result<Option<StateSnapshot>, StoreError> {
        Ok(self
            .lock()
            .state
            .get(&(topology.to_string(), scope.to_string()))
            .cloned())
    }

    async fn next_outbox_seq(&self, topology: &str) -> Result<i64, StoreError> {
        Ok(self.lock().next_seq.get(topology).copied().unwrap_or(0))
    }

    async fn commit(&self, commit: StoreCommit) -> Result<(), StoreError> {
        let mut st = self.lock();
        let control = st.control.entry(commit.topology.clone()).or_default();
        check_fence(&commit.topology, control, commit.epoch)?;
        let expected = st.next_seq.get(&commit.topology).copied().unwrap_or(0);
        if let Some(first) = commit.outbox.first()
            && first.seq != expected
        {
            return Err(StoreError::OutboxSequence {
                topology: commit.topology,
                expected,
                got: first.seq,
            });
        }
        for u in &commit.upserts {
            if !st.rows.contains_key(u.table) {
                return Err(StoreError::UnknownTable(u.table.to_string()));
            }
        }
        for u in commit.upserts {
            let rows = st.rows.entry(u.table.to_string()).or_default();
            if rows.get(&u.key).is_none_or(|old| old.version < u.version) {
                rows.insert(u.key.clone(), u);
            }
        }
        if let Some(last) = commit.outbox.last() {
            st.next_seq.insert(commit.topology.clone(), last.seq + 1);
        }
        let outbox = st.outbox.entry(commit.topology.clone()).or_default();
        for r in commit.outbox {
            outbox.insert(r.seq, r);
        }
        if let Some(state) = commit.state {
            st.state
                .insert((commit.topology.clone(), state.scope.clone()), state);
        }
        let offsets = st.offsets.entry(commit.topology).or_default();
        for p in commit.offsets {
            offsets.insert((p.topic, p.partition), p.next_offset);
        }
        Ok(())
    }

    async fn read_outbox(
        &self,
        topology: &str,
        from_seq: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let st = self.lock();
        Ok(st
            .outbox
            .get(topology)
            .map(|o| {
                o.range(from_seq..)
                    .take(limit)
                    .map(|(_, r)| r.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn delete_outbox(
        &self,
        topology: &str,
        seqs: std::ops::Range<i64>,
    ) -> Result<u64, StoreError> {
        let mut st = self.lock();
        let Some(o) = st.outbox.get_mut(topology) else {
            return Ok(0);
        };
        let before = o.len();
        o.retain(|seq, _| !seqs.contains(seq));
        Ok((before - o.len()) as u64)
    }

    async fn control(&self, topology: &str) -> Result<TopologyControl, StoreError> {
        Ok(self
            .lock()
            .control
            .entry(topology.to_string())
            .or_default()
            .clone())
    }

    async fn set_paused(
        &self,
        topology: &str,
        paused: bool,
    ) -> Result<TopologyControl, StoreError> {
        let mut st = self.lock();
        let control = st.control.entry(topology.to_string()).or_default();
        control.paused = paused;
        control.epoch += 1;
        Ok(control.clone())
    }

    async fn dump_table(&self, table: &TableSpec) -> Result<Vec<serde_json::Value>, StoreError> {
        dump(&self.lock(), table)
    }

    async fn snapshot(
        &self,
        topology: &str,
        tables: &[TableSpec],
    ) -> Result<StoreSnapshot, StoreError> {
        let st = self.lock();
        Ok(StoreSnapshot {
            offsets: st.offsets.get(topology).cloned().unwrap_or_default(),
            tables: tables
                .iter()
                .map(|t| dump(&st, t))
                .collect::<Result<_, _>>()?,
        })
    }
}

fn dump(st: &State, table: &TableSpec) -> Result<Vec<serde_json::Value>, StoreError> {
    let rows = st
        .rows
        .get(table.name)
        .ok_or_else(|| StoreError::UnknownTable(table.name.to_string()))?;
    Ok(rows
        .values()
        .map(|r| {
            let mut m = serde_json::Map::new();
            for (c, k) in table.key.iter().zip(&r.key) {
                m.insert(c.name.to_string(), k.clone().into());
            }
            m.insert("version".into(), r.version.into());
            for (c, v) in table.columns.iter().zip(&r.values) {
                m.insert(c.name.to_string(), value_to_json(v));
            }
            serde_json::Value::Object(m)
        })
        .collect())
}
