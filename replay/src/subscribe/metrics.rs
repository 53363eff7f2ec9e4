//! Metric names of the subscription server.

pub const SUBSCRIPTIONS_ACTIVE: &str = "conductor_subscriptions_active";
pub const FANOUT_LATENCY_SECONDS: &str = "conductor_fanout_latency_seconds";
pub const DELIVERED_TOTAL: &str = "conductor_subscription_events_total";
pub const FELL_BACK_TO_CATCHUP_TOTAL: &str = "conductor_subscription_catchup_fallbacks_total";
pub const DISCONNECTS_TOTAL: &str = "conductor_subscription_disconnects_total";
pub const REJECTIONS_TOTAL: &str = "conductor_subscribe_rejections_total";

/// Registers descriptions (shown on /metrics).
pub fn describe() {
    metrics::describe_gauge!(SUBSCRIPTIONS_ACTIVE, "Subscriptions being served now.");
    metrics::describe_histogram!(
        FANOUT_LATENCY_SECONDS,
        metrics::Unit::Seconds,
        "From a record's append to its delivery to a subscriber, by mode (live | catchup)."
    );
    metrics::describe_counter!(DELIVERED_TOTAL, "Events delivered to subscribers, by mode.");
    metrics::describe_counter!(
        FELL_BACK_TO_CATCHUP_TOTAL,
        "Times a subscriber too slow for the live tail went back to reading the log."
    );
    metrics::describe_counter!(
        DISCONNECTS_TOTAL,
        "Subscriptions ended, by transport and reason."
    );
    metrics::describe_counter!(
        REJECTIONS_TOTAL,
        "Subscribe attempts refused, by reason (auth, scope, rate_limit, concurrency, cursor)."
    );
}
