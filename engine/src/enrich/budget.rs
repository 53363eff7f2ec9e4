//! Metering and a spend cap for an enrichment stage: what each call costs
//! its tenant, per calendar month, with an alert at 80 % and a stop at
//! 100 %.
//!
//! The decision is part of the stage's fold, so it is deterministic and
//! rides in the stage's snapshot: a crash, a restart or a warm-up neither
//! charges twice nor forgets what was spent. The period is the month (UTC)
//! of the event that asked, not the wall clock, so a replay of February in
//! March still charges February.
//!
//! Usage is charged before the call, for every input the stage calls for:
//! a call the service refuses was still made. The same content asked by two
//! tenants is called once, and charged to the first.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The 80 % threshold, in percent.
pub const ALERT_PERCENT: u64 = 80;

/// How a stage meters its calls (from its processor's config).
#[derive(Debug, Clone, PartialEq)]
pub struct Metering {
    /// What `UsageRecorded.usage_kind` says (`embeddings`).
    pub usage_kind: String,
    /// Unit of the quantities (`tokens`).
    pub unit: String,
    /// Limit per tenant per month, in `unit`; `None`: unlimited (metered
    /// only).
    pub default_limit: Option<u64>,
    /// Limits of named tenants, over `default_limit`.
    pub tenant_limits: BTreeMap<String, u64>,
}

impl Metering {
    /// The monthly limit of `tenant`, if it has one.
    pub fn limit(&self, tenant: &str) -> Option<u64> {
        self.tenant_limits
            .get(tenant)
            .copied()
            .or(self.default_limit)
    }
}

/// The budget period of an event: its month, `2026-02`.
pub fn period(occurred_at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", occurred_at.year(), occurred_at.month())
}

/// What one tenant spent in one period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Spend {
    used: u64,
    alerted: bool,
    /// Stopped under this limit; a higher limit lifts the stop.
    stopped_under: Option<u64>,
}

/// A threshold reached, to announce once.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// 80 or 100.
    pub percent: u64,
    pub used: u64,
    pub limit: u64,
}

/// What the budget says to one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Call, and charge `units`; `alert` is the 80 % threshold when this
    /// call reached it.
    Call {
        units: u64,
        alert: Option<Threshold>,
    },
    /// Don't call: the tenant's budget for the period is spent. `stopped`
    /// is the 100 % threshold the first time (announce it), then `None`.
    Stop { stopped: Option<Threshold> },
}

/// Spend per (tenant, period): part of the stage's state. (Serialised as
/// a list: JSON map keys are strings, these are pairs.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    into = "Vec<((String, String), Spend)>",
    from = "Vec<((String, String), Spend)>"
)]
pub struct Budget {
    spent: BTreeMap<(String, String), Spend>,
}

impl From<Budget> for Vec<((String, String), Spend)> {
    fn from(b: Budget) -> Self {
        b.spent.into_iter().collect()
    }
}

impl From<Vec<((String, String), Spend)>> for Budget {
    fn from(entries: Vec<((String, String), Spend)>) -> Self {
        Budget {
            spent: entries.into_iter().collect(),
        }
    }
}

impl Budget {
    /// Charges `units` to `tenant` in `period`, unless that would pass its
    /// limit: then the tenant is stopped for the period (a smaller input
    /// later is stopped too — a stop is a stop until the period ends or the
    /// limit is raised).
    pub fn admit(
        &mut self,
        metering: &Metering,
        tenant: &str,
        period: &str,
        units: u64,
    ) -> Admission {
        let limit = metering.limit(tenant);
        let spend = self
            .spent
            .entry((tenant.to_string(), period.to_string()))
            .or_default();
        let Some(limit) = limit else {
            spend.used += units;
            return Admission::Call { units, alert: None };
        };
        // A raised limit lifts a stop.
        if spend.stopped_under.is_some_and(|under| limit > under) {
            spend.stopped_under = None;
        }
        if spend.stopped_under.is_some() {
            return Admission::Stop { stopped: None };
        }
        if spend.used + units > limit {
            spend.stopped_under = Some(limit);
            return Admission::Stop {
                stopped: Some(Threshold {
                    percent: 100,
                    used: spend.used,
                    limit,
                }),
            };
        }
        spend.used += units;
        let alert = (!spend.alerted && spend.used * 100 >= limit * ALERT_PERCENT).then(|| {
            spend.alerted = true;
            Threshold {
                percent: ALERT_PERCENT,
                used: spend.used,
                limit,
            }
        });
        Admission::Call { units, alert }
    }

    /// What `tenant` used in `period`.
    pub fn used(&self, tenant: &str, period: &str) -> u64 {
        self.spent
            .get(&(tenant.to_string(), period.to_string()))
            .map_or(0, |s| s.used)
    }

    pub fn clear(&mut self) {
        self.spent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metering(limit: Option<u64>) -> Metering {
        Metering {
            usage_kind: "embeddings".into(),
            unit: "tokens".into(),
            default_limit: limit,
            tenant_limits: BTreeMap::from([("big".to_string(), 1_000_000)]),
        }
    }

    #[test]
    fn alerts_once_at_80_percent_then_stops_at_100_and_stays_stopped() {
        let m = metering(Some(100));
        let mut b = Budget::default();
        let mut alerts = Vec::new();
        let mut calls = 0;
        let mut stops = Vec::new();
        for _ in 0..20 {
            match b.admit(&m, "acme", "2026-02", 15) {
                Admission::Call { alert, .. } => {
                    calls += 1;
                    alerts.extend(alert);
                }
                Admission::Stop { stopped } => stops.push(stopped),
            }
        }
        assert_eq!(calls, 6, "6 × 15 = 90 ≤ 100; a 7th would pass the limit");
        assert_eq!(
            alerts,
            vec![Threshold {
                percent: 80,
                used: 90,
                limit: 100
            }],
            "once, when 90 ≥ 80 % of 100"
        );
        assert_eq!(stops.len(), 14);
        assert_eq!(
            stops[0],
            Some(Threshold {
                percent: 100,
                used: 90,
                limit: 100
            })
        );
        assert!(stops[1..].iter().all(Option::is_none), "announced once");
        assert!(
            matches!(b.admit(&m, "acme", "2026-02", 1), Admission::Stop { .. }),
            "a smaller input is stopped too"
        );
        assert!(
            matches!(b.admit(&m, "acme", "2026-03", 15), Admission::Call { .. }),
            "a new month starts afresh"
        );
        assert_eq!(b.used("acme", "2026-02"), 90);
    }

    #[test]
    fn tenants_are_apart_and_a_named_limit_wins_over_the_default() {
        let m = metering(Some(10));
        let mut b = Budget::default();
        assert!(matches!(
            b.admit(&m, "acme", "2026-02", 11),
            Admission::Stop { .. }
        ));
        assert!(matches!(
            b.admit(&m, "big", "2026-02", 11),
            Admission::Call { alert: None, .. }
        ));
        assert!(matches!(
            b.admit(&m, "globex", "2026-02", 10),
            Admission::Call { alert: Some(_), .. }
        ));
        let raised = metering(Some(20));
        assert!(
            matches!(
                b.admit(&raised, "acme", "2026-02", 11),
                Admission::Call { .. }
            ),
            "a raised limit lifts the stop"
        );
        let unlimited = metering(None);
        assert!(
            matches!(
                b.admit(&unlimited, "acme", "2026-02", 1_000),
                Admission::Call { alert: None, .. }
            ),
            "no limit: metered only"
        );
    }

    #[test]
    fn the_period_is_the_events_month_in_utc() {
        let t = DateTime::parse_from_rfc3339("2026-02-28T23:30:00-02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(period(t), "2026-03");
    }
}
