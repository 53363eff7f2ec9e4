//! Encodings of values neither backend stores natively, shared so that both
//! write (and dump) the same text: timestamps, a state snapshot's positions,
//! a `LIMIT`.

use conductor_engine::store::{StateSnapshot, StoreError};
use std::collections::BTreeMap;

/// The text form of a timestamp wherever it is stored or dumped as text:
/// RFC 3339, UTC, exactly six fractional digits, `Z` — so that text order is
/// time order and dumps match `memory::value_to_json`.
pub fn format_timestamp(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A snapshot's positions as stored in `conductor_state.positions`: a JSON
/// array of `[topic, partition, next_offset]`.
pub fn state_positions_json(positions: &BTreeMap<(String, i32), i64>) -> String {
    let list: Vec<(&str, i32, i64)> = positions
        .iter()
        .map(|((t, p), o)| (t.as_str(), *p, *o))
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

/// Reads a stored `conductor_state` row back.
pub fn state_from_row(
    scope: String,
    format_version: i64,
    bytes: Vec<u8>,
    positions: &str,
) -> Result<StateSnapshot, StoreError> {
    let list: Vec<(String, i32, i64)> = serde_json::from_str(positions).map_err(|e| {
        StoreError::permanent(
            "load state",
            format!("unreadable positions of the state snapshot: {e}"),
        )
    })?;
    Ok(StateSnapshot {
        scope,
        format_version: u32::try_from(format_version).unwrap_or(u32::MAX),
        bytes,
        positions: list.into_iter().map(|(t, p, o)| ((t, p), o)).collect(),
    })
}

/// A `limit` argument as a SQL integer.
pub fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_with_six_fraction_digits_and_z() {
        let t = chrono::DateTime::from_timestamp_micros(1_770_000_000_123_458).unwrap();
        assert_eq!(format_timestamp(&t), "2026-02-02T02:40:00.123458Z");
        assert_eq!(
            format_timestamp(&chrono::DateTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
    }
}
