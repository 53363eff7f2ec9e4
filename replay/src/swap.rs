//! `conductor replay swap` and `rollback`: another generation made live.
//!
//! 1. The live topology is paused, which moves its control epoch: from then
//!    on no batch of a running worker lands (the store fences it).
//! 2. The incoming generation is folded forward to live's positions, side
//!    effects off, so the offsets stay where live had them and the
//!    changefeed neither repeats nor skips anything.
//! 3. One transaction of the live database exchanges the tables and offsets,
//!    moves the epoch again and restores the paused flag as it was; a worker
//!    that cached anything about the old tables is fenced and reloads.
//!    A shadow's outbox moves into live's in the same transaction: it is
//!    empty but for a migration (see `rebuild::Migration`), whose derived
//!    events the relay then publishes once.
//!
//! With `rewind` (point-in-time shadows), step 2 is skipped: the offsets
//! move with the incoming generation and live folds again from there.

use crate::catch_up::{self, Positions};
use crate::rebuild::shadow_note;
use crate::{Generation, GenerationHome, ReplayError};
use conductor_engine::log::Log;
use conductor_engine::processor::Processor;
use conductor_engine::runtime::TopologyConfig;
use conductor_engine::store::TopologyControl;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct SwapReport {
    /// Records folded into the incoming generation to reach live's positions.
    pub caught_up_records: u64,
    /// Live's positions after the swap.
    pub positions: Positions,
    pub control: TopologyControl,
    /// Where the outgoing live generation is kept.
    pub previous: String,
    /// Set when a migration's shadow was swapped in: its derived events are
    /// now in live's outbox.
    pub migration: Option<crate::rebuild::Migration>,
}

/// Makes `incoming` live (see the module doc).
pub async fn swap(
    log: Arc<dyn Log>,
    home: &GenerationHome,
    config: &TopologyConfig,
    processor: Box<dyn Processor>,
    incoming: Generation,
    rewind: bool,
) -> Result<SwapReport, ReplayError> {
    let topology = &config.name;
    if !home.exists(topology, incoming).await? {
        let hint = match incoming {
            Generation::Shadow => {
                format!("build one with `conductor replay rebuild --topology {topology}`")
            }
            Generation::Previous => {
                "a previous generation exists after a `conductor replay swap`".to_string()
            }
        };
        return Err(ReplayError::refused(
            format!(
                "topology `{topology}` has no {} generation",
                incoming.as_str()
            ),
            hint,
        ));
    }
    let mut migration = None;
    if incoming == Generation::Shadow {
        let note = shadow_note(home, topology).await?;
        migration = note.as_ref().and_then(|n| n.migration.clone());
        match note {
            Some(note) if !note.complete => {
                return Err(ReplayError::refused(
                    format!("the shadow of `{topology}` is incomplete: its rebuild did not finish"),
                    format!("run `conductor replay rebuild --topology {topology}` again"),
                ));
            }
            Some(note) if note.point_in_time() && !rewind => {
                return Err(ReplayError::refused(
                    format!(
                        "the shadow of `{topology}` is a point-in-time rebuild: swapping it in moves the topology's offsets back"
                    ),
                    "pass --rewind to do that (live then folds again from the shadow's positions)",
                ));
            }
            _ => {}
        }
    }
    let tables = processor.tables();
    let live = home.live();
    let was_paused = live.control(topology).await?.paused;
    live.set_paused(topology, true).await?;
    let result = async {
        let defaults = catch_up::default_positions(log.as_ref(), config).await?;
        let live_at = catch_up::complete(&live.load_offsets(topology).await?, &defaults);
        let store = home.open(topology, incoming).await?;
        store.migrate(&tables).await?;
        let caught_up = if rewind {
            0
        } else {
            let folded = catch_up::fold_to(
                log.clone(),
                store.clone(),
                config,
                processor,
                &live_at,
                migration.is_some(),
                |_, _| {},
            )
            .await;
            store.close().await;
            folded?.records
        };
        store.close().await;
        drop(store);
        let control = home
            .exchange(topology, &tables, incoming, was_paused)
            .await?;
        let positions = catch_up::complete(&live.load_offsets(topology).await?, &defaults);
        Ok(SwapReport {
            caught_up_records: caught_up,
            positions,
            control,
            previous: home.describe(topology, Generation::Previous),
            migration: migration.clone(),
        })
    }
    .await;
    if result.is_err()
        && let Err(e) = live.set_paused(topology, was_paused).await
    {
        tracing::warn!(topology = %topology, error = %e, "could not restore the paused flag after a failed swap");
    }
    result
}
