//! A run's state: START → RUNNING → COMPLETE | FAIL | ABORT, whatever order
//! its events arrive in.
//!
//! A run is what its events say together, not what the last one says: the
//! start is the earliest START, the end the latest terminal event (COMPLETE,
//! FAIL, ABORT), and a terminal event decides the status for good — a late
//! START or RUNNING never reopens a finished run. An event that changes none
//! of that (the same event again, an older RUNNING) changes nothing, so a
//! retried or replayed event writes no row. The version counts the changes:
//! a run's events share one record key (`run:NS/JOB`), so they are folded in
//! one partition's order and the count is the same on every replay.

use conductor_schemas::RunEventType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Microseconds since the epoch.
pub type Micros = i64;

/// A run's terminal event: when, its symbol, and its error message (FAIL).
pub type Ended = (Micros, String, Option<String>);

/// What a run's events said so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// The job: `namespace`, `name`.
    pub job: (String, String),
    /// Earliest START.
    pub started_at: Option<Micros>,
    /// Latest RUNNING.
    pub running_at: Option<Micros>,
    /// Latest terminal event.
    pub ended: Option<Ended>,
    /// Latest event of any type (OTHER or none included).
    pub updated_at: Micros,
    /// Changes so far: the row's version.
    pub version: i64,
}

/// One event of a run, as the state machine sees it.
#[derive(Debug, Clone)]
pub struct RunTransition {
    pub event_type: Option<RunEventType>,
    pub at: Micros,
    /// The `errorMessage` facet's message, if any.
    pub error_message: Option<String>,
}

impl RunState {
    /// The status: the terminal event's type once there is one, else RUNNING
    /// once running, else START, else OTHER (only metadata updates so far).
    pub fn status(&self) -> &str {
        if let Some((_, status, _)) = &self.ended {
            status
        } else if self.running_at.is_some() {
            "RUNNING"
        } else if self.started_at.is_some() {
            "START"
        } else {
            "OTHER"
        }
    }

    /// What the run's row and node show.
    fn visible(&self) -> (&str, Option<Micros>, &Option<Ended>, Micros) {
        (self.status(), self.started_at, &self.ended, self.updated_at)
    }

    /// Folds one event; true when the run changed (then `version` went up).
    pub fn apply(&mut self, t: &RunTransition) -> bool {
        let before = self.clone();
        match t.event_type {
            Some(RunEventType::Start) => {
                self.started_at = Some(self.started_at.map_or(t.at, |s| s.min(t.at)));
            }
            Some(RunEventType::Running) => {
                self.running_at = Some(self.running_at.map_or(t.at, |r| r.max(t.at)));
            }
            Some(kind @ (RunEventType::Complete | RunEventType::Fail | RunEventType::Abort)) => {
                let candidate = (t.at, kind.symbol().to_string(), t.error_message.clone());
                // The latest terminal event wins; at the same instant the
                // greater symbol does, so the outcome doesn't depend on order.
                let newer = match &self.ended {
                    None => true,
                    Some((at, symbol, _)) => (t.at, kind.symbol()) > (*at, symbol.as_str()),
                };
                if newer {
                    self.ended = Some(candidate);
                }
            }
            Some(RunEventType::Other) | None => {}
        }
        self.updated_at = self.updated_at.max(t.at);
        // Only what the row shows counts (a RUNNING after the end moves
        // `running_at` but not the run).
        let changed = self.visible() != before.visible();
        if changed {
            self.version += 1;
        }
        changed
    }
}

/// Every run's state, by (tenant, run id). Runs are few next to their
/// events (one state per run, a few dozen bytes), so all are kept: a late
/// event of a run finished long ago is still judged right.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runs {
    pub by_id: BTreeMap<(String, String), RunState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: Option<RunEventType>, at: Micros) -> RunTransition {
        RunTransition {
            event_type: kind,
            at,
            error_message: None,
        }
    }

    fn fold(events: &[RunTransition]) -> RunState {
        let mut s = RunState::default();
        for e in events {
            s.apply(e);
        }
        s
    }

    #[test]
    fn a_run_goes_start_running_complete() {
        let mut s = RunState::default();
        assert!(s.apply(&t(Some(RunEventType::Start), 10)));
        assert_eq!(s.status(), "START");
        assert!(s.apply(&t(Some(RunEventType::Running), 20)));
        assert_eq!(s.status(), "RUNNING");
        assert!(s.apply(&t(Some(RunEventType::Complete), 30)));
        assert_eq!(
            (s.status(), s.started_at, s.ended.as_ref().map(|e| e.0)),
            ("COMPLETE", Some(10), Some(30))
        );
        assert_eq!(s.version, 3);
    }

    #[test]
    fn a_late_start_or_running_does_not_reopen_a_finished_run() {
        let s = fold(&[
            t(Some(RunEventType::Complete), 30),
            t(Some(RunEventType::Running), 20),
            t(Some(RunEventType::Start), 10),
        ]);
        assert_eq!(s.status(), "COMPLETE");
        assert_eq!(s.started_at, Some(10));
    }

    #[test]
    fn the_same_event_again_changes_nothing() {
        let mut s = fold(&[
            t(Some(RunEventType::Start), 10),
            t(Some(RunEventType::Running), 20),
        ]);
        let version = s.version;
        assert!(!s.apply(&t(Some(RunEventType::Start), 10)));
        assert!(!s.apply(&t(Some(RunEventType::Running), 15)));
        assert_eq!(s.version, version);
    }

    #[test]
    fn any_order_ends_in_the_same_run() {
        let events = [
            t(Some(RunEventType::Start), 10),
            t(Some(RunEventType::Running), 20),
            t(None, 25),
            t(Some(RunEventType::Fail), 30),
            t(Some(RunEventType::Abort), 30),
        ];
        let straight = fold(&events);
        let mut reversed = events.to_vec();
        reversed.reverse();
        let other = fold(&reversed);
        assert_eq!(
            (
                other.status(),
                other.started_at,
                &other.ended,
                other.updated_at
            ),
            (
                straight.status(),
                straight.started_at,
                &straight.ended,
                straight.updated_at
            )
        );
        assert_eq!(straight.status(), "FAIL");
    }
}
