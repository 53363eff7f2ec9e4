//! `conductor replay rebuild`: a topology's projections folded again from
//! the log into a fresh shadow generation.

use crate::catch_up::{self, Folded, Positions};
use crate::{Generation, GenerationHome, ReplayError};
use conductor_engine::log::Log;
use conductor_engine::processor::Processor;
use conductor_engine::runtime::{TopologyConfig, WorkerOptions};
use conductor_engine::store::SCOPE_OUTPUT_GENERATION;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Where a rebuild starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The oldest record still in each partition.
    Earliest,
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
    /// Explicit positions (from a cursor); other partitions start earliest.
    Positions(Positions),
}

/// What to rebuild.
#[derive(Debug, Clone)]
pub struct RebuildRequest {
    pub from: ReplayFrom,
    /// Point in time: only records with a timestamp `<=` this (ms) are
    /// folded. `None`: everything in the log when the rebuild starts.
    pub to_ms: Option<i64>,
}

/// Kept inside the shadow (see `GenerationHome::write_note`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShadowNote {
    pub complete: bool,
    pub from: String,
    pub to_ms: Option<i64>,
    /// Where the rebuild stopped, per "topic/partition".
    pub end: std::collections::BTreeMap<String, i64>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub records: u64,
    /// Set when the shadow was built under another output generation than
    /// live's (a new embedding model): see [`Migration`].
    #[serde(default)]
    pub migration: Option<Migration>,
}

/// A rebuild under a new output generation (`Processor::output_generation`,
/// e.g. an embedding model): the shadow's rows differ from live's by design,
/// so verify compares which rows exist (keys and versions), and its derived
/// events — which live never emitted — stay in its outbox until the swap
/// moves them into live's, for the relay to publish exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Migration {
    /// Live's output generation when the rebuild started.
    pub from: String,
    /// The shadow's.
    pub to: String,
}

impl ShadowNote {
    /// A point-in-time shadow is a restore, not a replacement: it can't be
    /// verified against live, and swapping it in moves the offsets back.
    pub fn point_in_time(&self) -> bool {
        self.to_ms.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub shadow: String,
    pub migration: Option<Migration>,
    pub folded: Folded,
    pub end: Positions,
    pub seconds: f64,
}

/// The offsets a rebuild stops at: the end of each partition now, or the
/// first record after `to_ms`.
pub async fn end_positions(
    log: &dyn Log,
    config: &TopologyConfig,
    to_ms: Option<i64>,
) -> Result<Positions, ReplayError> {
    let mut out = Positions::new();
    for topic in &config.sources.topics {
        for p in log.describe_topic(topic).await?.partitions {
            let end = match to_ms {
                None => p.high_watermark,
                Some(t) => log
                    .offset_for_timestamp(topic, p.partition, t.saturating_add(1))
                    .await?
                    .unwrap_or(p.high_watermark),
            };
            out.insert((topic.clone(), p.partition), end);
        }
    }
    Ok(out)
}

async fn start_positions(
    log: &dyn Log,
    config: &TopologyConfig,
    from: &ReplayFrom,
) -> Result<Positions, ReplayError> {
    let mut out = Positions::new();
    for topic in &config.sources.topics {
        for p in log.describe_topic(topic).await?.partitions {
            let key = (topic.clone(), p.partition);
            let start = match from {
                ReplayFrom::Earliest => p.low_watermark,
                ReplayFrom::Time(t) => log
                    .offset_for_timestamp(topic, p.partition, *t)
                    .await?
                    .unwrap_or(p.high_watermark),
                ReplayFrom::Positions(given) => given.get(&key).copied().unwrap_or(p.low_watermark),
            };
            out.insert(key, start.max(p.low_watermark));
        }
    }
    Ok(out)
}

fn describe_from(from: &ReplayFrom) -> String {
    match from {
        ReplayFrom::Earliest => "earliest".into(),
        ReplayFrom::Time(t) => format!("time {t}"),
        ReplayFrom::Positions(p) => format!("positions {p:?}"),
    }
}

fn position_names(p: &Positions) -> std::collections::BTreeMap<String, i64> {
    p.iter()
        .map(|((t, n), o)| (format!("{t}/{n}"), *o))
        .collect()
}

/// Rebuilds `config`'s projections into a fresh shadow (an existing shadow
/// is discarded). `progress(done, total)` is called after every batch.
pub async fn rebuild(
    log: Arc<dyn Log>,
    home: &GenerationHome,
    config: &TopologyConfig,
    processor: Box<dyn Processor>,
    request: &RebuildRequest,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, ReplayError> {
    let started = Instant::now();
    let end = end_positions(log.as_ref(), config, request.to_ms).await?;
    let start = start_positions(log.as_ref(), config, &request.from).await?;
    let topology = &config.name;
    let migration = migration(home, topology, processor.as_ref()).await?;
    home.remove(topology, Generation::Shadow).await?;
    let mut note = ShadowNote {
        complete: false,
        from: describe_from(&request.from),
        to_ms: request.to_ms,
        end: position_names(&end),
        started_ms: chrono::Utc::now().timestamp_millis(),
        finished_ms: None,
        records: 0,
        migration: migration.clone(),
    };
    home.write_note(topology, Generation::Shadow, &to_json(&note))
        .await?;
    let shadow = home.open(topology, Generation::Shadow).await?;
    let options = WorkerOptions {
        end: Some(end.clone()),
        start: Some(start),
        side_effects: false,
        emit_outputs: migration.is_some(),
        store_starts_empty: true,
    };
    let folded = catch_up::fold_with(
        log,
        shadow.clone(),
        config,
        processor,
        options,
        &mut progress,
    )
    .await?;
    shadow.close().await;
    note.complete = true;
    note.finished_ms = Some(chrono::Utc::now().timestamp_millis());
    note.records = folded.records;
    home.write_note(topology, Generation::Shadow, &to_json(&note))
        .await?;
    Ok(RebuildReport {
        shadow: home.describe(topology, Generation::Shadow),
        migration,
        folded,
        end,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A migration when `processor`'s output generation differs from the one
/// live stored (live with none stored has emitted nothing of another kind).
async fn migration(
    home: &GenerationHome,
    topology: &str,
    processor: &dyn Processor,
) -> Result<Option<Migration>, ReplayError> {
    let Some(to) = processor.output_generation() else {
        return Ok(None);
    };
    let live = home
        .live()
        .load_state(topology, SCOPE_OUTPUT_GENERATION)
        .await?;
    Ok(live
        .map(|s| String::from_utf8_lossy(&s.bytes).into_owned())
        .filter(|from| *from != to)
        .map(|from| Migration { from, to }))
}

fn to_json(note: &ShadowNote) -> serde_json::Value {
    serde_json::to_value(note).unwrap_or_default()
}

/// The shadow's note, when there is a shadow.
pub async fn shadow_note(
    home: &GenerationHome,
    topology: &str,
) -> Result<Option<ShadowNote>, ReplayError> {
    Ok(home
        .read_note(topology, Generation::Shadow)
        .await?
        .and_then(|v| serde_json::from_value(v).ok()))
}
