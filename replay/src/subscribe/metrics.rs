//! Metric names of the subscription server: declared with every other
//! metric in `conductor_engine::metrics`.

pub use conductor_engine::metrics::{
    FANOUT_LATENCY_SECONDS, SUBSCRIBE_REJECTIONS_TOTAL as REJECTIONS_TOTAL,
    SUBSCRIPTION_CATCHUP_FALLBACKS_TOTAL as FELL_BACK_TO_CATCHUP_TOTAL,
    SUBSCRIPTION_DISCONNECTS_TOTAL as DISCONNECTS_TOTAL,
    SUBSCRIPTION_EVENTS_TOTAL as DELIVERED_TOTAL, SUBSCRIPTIONS_ACTIVE,
};

/// Registers descriptions (shown on /metrics).
pub fn describe() {
    conductor_engine::metrics::describe();
}
