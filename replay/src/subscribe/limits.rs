//! Per-tenant limits and QoS tiers.
//!
//! - Concurrent subscriptions per tenant are capped; the slot is held by a
//!   [`SubscriptionPermit`] and given back when it drops.
//! - Subscribe attempts per tenant go through a token bucket (rate + burst).
//! - Each tier has a delivery budget (events/s per subscription). A
//!   subscription over budget is paced, not dropped: it falls behind the
//!   live tail and catches up from the log later, losing nothing.
//!
//! A refusal carries how long to wait (`retry_after_ms`), sent to clients
//! as HTTP 429 with `Retry-After` or an error message with `retryAfterMs`.

use super::auth::Tier;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

/// Per-tenant limits of the subscription server: the `[subscriptions]`
/// table of the config file (every key optional; these are the defaults).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Subscriptions one tenant may hold open at once (all transports).
    pub max_subscriptions_per_tenant: usize,
    /// Subscribe attempts per second per tenant (token bucket refill).
    pub subscribes_per_second: u32,
    /// Subscribe attempts a tenant may make at once (token bucket size).
    pub subscribe_burst: u32,
    /// Delivery budget of one subscription, by the token's tier.
    pub tier_events_per_second: TierBudgets,
}

/// Events per second one subscription of each tier may receive; above it
/// the subscription is paced (it falls behind and catches up, losing nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierBudgets {
    pub gold: u32,
    pub silver: u32,
    pub bronze: u32,
}

impl Default for TierBudgets {
    fn default() -> Self {
        TierBudgets {
            gold: 50_000,
            silver: 5_000,
            bronze: 500,
        }
    }
}

impl TierBudgets {
    pub fn of(&self, tier: Tier) -> u32 {
        match tier {
            Tier::Gold => self.gold,
            Tier::Silver => self.silver,
            Tier::Bronze => self.bronze,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_subscriptions_per_tenant: 10_000,
            subscribes_per_second: 200,
            subscribe_burst: 1_000,
            tier_events_per_second: TierBudgets::default(),
        }
    }
}

impl LimitsConfig {
    /// Every problem with the values, as `key: what is wrong`; empty when valid.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut positive = |key: &str, v: u64| {
            if v == 0 {
                out.push(format!("{key} is 0; it must be at least 1"));
            }
        };
        positive(
            "max_subscriptions_per_tenant",
            self.max_subscriptions_per_tenant as u64,
        );
        positive("subscribes_per_second", self.subscribes_per_second.into());
        positive("subscribe_burst", self.subscribe_burst.into());
        let t = &self.tier_events_per_second;
        positive("tier_events_per_second.gold", t.gold.into());
        positive("tier_events_per_second.silver", t.silver.into());
        positive("tier_events_per_second.bronze", t.bronze.into());
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("too many subscribe attempts for tenant `{tenant}`; retry in {retry_after_ms} ms")]
    Rate { tenant: String, retry_after_ms: u64 },
    #[error("tenant `{tenant}` already has {max} subscriptions open (the limit); close one first")]
    Concurrency { tenant: String, max: usize },
}

impl LimitError {
    pub fn retry_after_ms(&self) -> u64 {
        match self {
            LimitError::Rate { retry_after_ms, .. } => *retry_after_ms,
            LimitError::Concurrency { .. } => 1_000,
        }
    }
}

pub struct Limits {
    config: LimitsConfig,
    subscribes: DefaultKeyedRateLimiter<String>,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// A held concurrency slot.
pub struct SubscriptionPermit {
    tenant: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
    /// Pacing of deliveries for the subscription's tier.
    pace: DefaultDirectRateLimiter,
}

impl SubscriptionPermit {
    /// Waits until the tier's budget allows one more delivery.
    pub async fn paced(&self) {
        self.pace.until_ready().await;
    }
}

impl Drop for SubscriptionPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Self {
        let quota = Quota::per_second(nonzero(config.subscribes_per_second))
            .allow_burst(nonzero(config.subscribe_burst));
        Limits {
            subscribes: governor::RateLimiter::keyed(quota),
            open: Arc::default(),
            config,
        }
    }

    /// Admits a new subscription of `tenant` at `tier`, or says why not.
    pub fn admit(&self, tenant: &str, tier: Tier) -> Result<SubscriptionPermit, LimitError> {
        if let Err(not_until) = self.subscribes.check_key(&tenant.to_string()) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(LimitError::Rate {
                tenant: tenant.to_string(),
                retry_after_ms: wait.as_millis().max(1) as u64,
            });
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(tenant.to_string()).or_default();
        if *n >= self.config.max_subscriptions_per_tenant {
            return Err(LimitError::Concurrency {
                tenant: tenant.to_string(),
                max: self.config.max_subscriptions_per_tenant,
            });
        }
        *n += 1;
        let per_second = self.config.tier_events_per_second.of(tier);
        Ok(SubscriptionPermit {
            tenant: tenant.to_string(),
            open: self.open.clone(),
            pace: governor::RateLimiter::direct(
                Quota::per_second(nonzero(per_second)).allow_burst(nonzero(per_second)),
            ),
        })
    }

    /// Subscriptions of `tenant` open now.
    pub fn open(&self, tenant: &str) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_concurrency_per_tenant_and_frees_on_drop() {
        let limits = Limits::new(LimitsConfig {
            max_subscriptions_per_tenant: 2,
            ..Default::default()
        });
        let a = limits.admit("acme", Tier::Silver).unwrap();
        let _b = limits.admit("acme", Tier::Silver).unwrap();
        assert!(matches!(
            limits.admit("acme", Tier::Silver),
            Err(LimitError::Concurrency { .. })
        ));
        assert!(
            limits.admit("globex", Tier::Silver).is_ok(),
            "other tenants are not affected"
        );
        drop(a);
        assert!(limits.admit("acme", Tier::Silver).is_ok());
    }

    #[test]
    fn reads_the_subscriptions_table_and_names_bad_keys() {
        let c: LimitsConfig = toml::from_str(
            "max_subscriptions_per_tenant = 3\n[tier_events_per_second]\nbronze = 10\n",
        )
        .unwrap();
        assert_eq!(c.max_subscriptions_per_tenant, 3);
        assert_eq!(c.tier_events_per_second.bronze, 10);
        assert_eq!(c.tier_events_per_second.gold, 50_000, "defaults kept");
        let err = toml::from_str::<LimitsConfig>("max_subscriptions = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_subscriptions"), "{err}");
        let zero = LimitsConfig {
            subscribe_burst: 0,
            ..Default::default()
        };
        assert_eq!(
            zero.problems(),
            ["subscribe_burst is 0; it must be at least 1"]
        );
    }

    #[test]
    fn rate_limits_subscribes_with_a_retry_hint() {
        let limits = Limits::new(LimitsConfig {
            subscribes_per_second: 1,
            subscribe_burst: 2,
            ..Default::default()
        });
        let _p1 = limits.admit("acme", Tier::Bronze).unwrap();
        let _p2 = limits.admit("acme", Tier::Bronze).unwrap();
        let err = limits.admit("acme", Tier::Bronze).err().unwrap();
        assert!(matches!(err, LimitError::Rate { .. }), "{err}");
        assert!(err.retry_after_ms() > 0 && err.retry_after_ms() <= 1000);
    }
}
