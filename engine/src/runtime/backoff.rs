//! The one backoff of the runtime: how long the worker, the relay and the
//! sinks wait before retrying what failed because something they need is
//! away (the store, the log, a sink's target, a processor's dependency).
//!
//! 250 ms doubling to 5 s, starting over once an attempt passes. The cap is
//! what an outage costs after it ends: a topology resumes at most 5 s after
//! its store, log or target is back, and a dependency that is down gets one
//! attempt per 5 s from each waiting task — little load for a server coming
//! back up.

use std::time::Duration;

pub const FIRST: Duration = Duration::from_millis(250);
pub const CAP: Duration = Duration::from_secs(5);

/// Delays between the retries of one failing step.
#[derive(Debug, Default)]
pub struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    /// The delay before the next attempt: [`FIRST`], then doubling to [`CAP`].
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.last.map_or(FIRST, |d| (d * 2).min(CAP));
        self.last = Some(delay);
        delay
    }

    /// An attempt passed: the next failure starts from [`FIRST`] again.
    /// Returns whether it was retrying (to say that it recovered).
    pub fn reset(&mut self) -> bool {
        self.last.take().is_some()
    }

    /// Whether the last attempt failed.
    pub fn retrying(&self) -> bool {
        self.last.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_starts_over_after_a_success() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert!(b.reset());
        assert!(!b.reset());
        assert_eq!(b.next_delay(), FIRST);
    }
}
