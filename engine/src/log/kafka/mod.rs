//! Kafka backend (being written).
