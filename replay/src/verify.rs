//! `conductor replay verify`: the shadow against live, at the same log
//! positions, table by table and row by row.

use crate::catch_up::{self, Positions};
use crate::rebuild::{Migration, shadow_note};
use crate::{Generation, GenerationHome, ReplayError};
use conductor_engine::log::Log;
use conductor_engine::processor::Processor;
use conductor_engine::projection::TableSpec;
use conductor_engine::runtime::TopologyConfig;
use conductor_engine::store::rows_digest;
use serde::Serialize;
use serde_json::Value;
use std::cmp::Ordering;
use std::sync::Arc;

/// One row that differs: absent on a side, or present on both with other
/// values; with the blake3 digest of each side's row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RowDifference {
    pub key: Vec<Value>,
    pub live: Option<Value>,
    pub shadow: Option<Value>,
    pub live_digest: Option<String>,
    pub shadow_digest: Option<String>,
}

/// blake3 of one row as `rows_digest` renders it.
pub fn row_digest(row: &Value) -> String {
    blake3::hash(row.to_string().as_bytes())
        .to_hex()
        .to_string()
}

impl RowDifference {
    fn new(key: Vec<Value>, live: Option<&Value>, shadow: Option<&Value>) -> Self {
        RowDifference {
            key,
            live_digest: live.map(row_digest),
            shadow_digest: shadow.map(row_digest),
            live: live.cloned(),
            shadow: shadow.cloned(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TableComparison {
    pub table: String,
    pub live_rows: usize,
    pub shadow_rows: usize,
    pub live_digest: String,
    pub shadow_digest: String,
    /// Rows that differ, counted in full.
    pub differing_rows: usize,
    /// The first differences in key order (at most the requested number).
    pub first_differences: Vec<RowDifference>,
}

impl TableComparison {
    pub fn equal(&self) -> bool {
        self.live_digest == self.shadow_digest
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The log positions both sides were compared at, per "topic/partition".
    pub positions: std::collections::BTreeMap<String, i64>,
    /// Records folded into the shadow to bring it to those positions.
    pub caught_up_records: u64,
    /// What was compared: whole rows, or (a migration) which rows exist.
    pub compared: Compared,
    pub migration: Option<Migration>,
    pub tables: Vec<TableComparison>,
}

/// What verify compares.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compared {
    /// Every column: the shadow must equal live.
    Rows,
    /// A migration's shadow differs from live by design (another model):
    /// the same rows must exist, at the same versions.
    KeysAndVersions,
}

/// Each row cut down to its key columns and `version`: what a migration
/// must keep (every entity still has its row, at its latest version).
pub fn keys_and_versions(spec: &TableSpec, rows: &[Value]) -> Vec<Value> {
    rows.iter()
        .map(|row| {
            let mut kept = serde_json::Map::new();
            for name in spec.key.iter().map(|c| c.name).chain(["version"]) {
                if let Some(v) = row.get(name) {
                    kept.insert(name.to_string(), v.clone());
                }
            }
            Value::Object(kept)
        })
        .collect()
}

impl VerifyReport {
    pub fn equal(&self) -> bool {
        self.tables.iter().all(TableComparison::equal)
    }
}

/// Compares two dumps ordered by key.
pub fn compare_rows(
    spec: &TableSpec,
    live: &[Value],
    shadow: &[Value],
    max_differences: usize,
) -> TableComparison {
    let key_of = |row: &Value| -> Vec<Value> {
        spec.key
            .iter()
            .map(|c| row.get(c.name).cloned().unwrap_or(Value::Null))
            .collect()
    };
    let cmp_keys = |a: &[Value], b: &[Value]| -> Ordering {
        // Keys are text columns: compare as the stores order them (bytes).
        let s = |v: &[Value]| -> Vec<String> {
            v.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect()
        };
        s(a).cmp(&s(b))
    };
    let (mut i, mut j) = (0, 0);
    let mut differing = 0;
    let mut first = Vec::new();
    let mut note = |d: RowDifference| {
        differing += 1;
        if first.len() < max_differences {
            first.push(d);
        }
    };
    while i < live.len() || j < shadow.len() {
        let order = match (live.get(i), shadow.get(j)) {
            (Some(l), Some(s)) => cmp_keys(&key_of(l), &key_of(s)),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                note(RowDifference::new(key_of(&live[i]), Some(&live[i]), None));
                i += 1;
            }
            Ordering::Greater => {
                note(RowDifference::new(
                    key_of(&shadow[j]),
                    None,
                    Some(&shadow[j]),
                ));
                j += 1;
            }
            Ordering::Equal => {
                if row_digest(&live[i]) != row_digest(&shadow[j]) {
                    note(RowDifference::new(
                        key_of(&live[i]),
                        Some(&live[i]),
                        Some(&shadow[j]),
                    ));
                }
                i += 1;
                j += 1;
            }
        }
    }
    TableComparison {
        table: spec.name.to_string(),
        live_rows: live.len(),
        shadow_rows: shadow.len(),
        live_digest: rows_digest(live),
        shadow_digest: rows_digest(shadow),
        differing_rows: differing,
        first_differences: first,
    }
}

/// Brings the shadow to the positions of a consistent snapshot of live
/// (live keeps running), then compares every table.
pub async fn verify(
    log: Arc<dyn Log>,
    home: &GenerationHome,
    config: &TopologyConfig,
    processor: Box<dyn Processor>,
    max_differences: usize,
) -> Result<VerifyReport, ReplayError> {
    let topology = &config.name;
    let tables = processor.tables();
    let Some(note) = shadow_note(home, topology).await? else {
        return Err(ReplayError::refused(
            format!("topology `{topology}` has no shadow to verify"),
            format!("build one with `conductor replay rebuild --topology {topology}`"),
        ));
    };
    if !note.complete {
        return Err(ReplayError::refused(
            format!("the shadow of `{topology}` is incomplete: its rebuild did not finish"),
            format!("run `conductor replay rebuild --topology {topology}` again"),
        ));
    }
    if note.point_in_time() {
        return Err(ReplayError::refused(
            format!(
                "the shadow of `{topology}` is a point-in-time rebuild (to {} ms): live is past it, so there are no equal positions to compare at",
                note.to_ms.unwrap_or_default()
            ),
            "query the shadow directly, or swap it in with `conductor replay swap --rewind`",
        ));
    }
    let live = home.live();
    let defaults = catch_up::default_positions(log.as_ref(), config).await?;
    let live_snapshot = live.snapshot(topology, &tables).await?;
    let target: Positions = catch_up::complete(&live_snapshot.offsets, &defaults);

    let shadow = home.open(topology, Generation::Shadow).await?;
    let migration = note.migration.is_some();
    let caught_up = catch_up::fold_to(
        log,
        shadow.clone(),
        config,
        processor,
        &target,
        migration,
        |_, _| {},
    )
    .await?;
    let shadow_snapshot = shadow.snapshot(topology, &tables).await?;
    shadow.close().await;
    let shadow_at = catch_up::complete(&shadow_snapshot.offsets, &defaults);
    if shadow_at != target {
        return Err(ReplayError::refused(
            format!("the shadow stopped at {shadow_at:?}, not at live's {target:?}"),
            "run verify again",
        ));
    }
    let tables = tables
        .iter()
        .zip(live_snapshot.tables.iter().zip(&shadow_snapshot.tables))
        .map(|(spec, (l, s))| {
            if migration {
                let (l, s) = (keys_and_versions(spec, l), keys_and_versions(spec, s));
                compare_rows(spec, &l, &s, max_differences)
            } else {
                compare_rows(spec, l, s, max_differences)
            }
        })
        .collect();
    Ok(VerifyReport {
        positions: target
            .iter()
            .map(|((t, p), o)| (format!("{t}/{p}"), *o))
            .collect(),
        caught_up_records: caught_up.records,
        compared: if migration {
            Compared::KeysAndVersions
        } else {
            Compared::Rows
        },
        migration: note.migration,
        tables,
    })
}
