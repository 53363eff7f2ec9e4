//! Derived event ids: the dedupe key of events whose producer gave none.

use serde_json::Value as Json;

use crate::types::Event;

/// `"b3-"` + the first 32 hex digits (128 bits) of the blake3 hash of the
/// event's canonical JSON without `event_id`.
///
/// Canonical JSON is the event's JSON form with object keys sorted by their
/// UTF-8 bytes and no whitespace. Keys are sorted here rather than by relying
/// on serde_json's map order, which a `preserve_order` feature enabled anywhere
/// in the build would change. The same payload always gets the same id,
/// whatever `event_id` it carries and whichever encoding it arrived in
/// (decoders truncate timestamps to microseconds first).
pub fn derive_event_id(event: &Event) -> String {
    // Serializing our own types cannot fail (string keys, infallible impls).
    let mut json = serde_json::to_value(event).expect("events always serialize to JSON");
    if let Json::Object(object) = &mut json {
        object.remove("event_id");
    }
    let mut canonical = String::with_capacity(256);
    write_canonical(&json, &mut canonical);
    let hash = blake3::hash(canonical.as_bytes());
    format!("b3-{}", &hash.to_hex()[..32])
}

fn write_canonical(json: &Json, out: &mut String) {
    match json {
        Json::Object(object) => {
            let mut entries: Vec<_> = object.iter().collect();
            entries.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (index, (key, value)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_scalar(&Json::String(key.clone()), out);
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// serde_json's compact form of a scalar (escaped string, shortest
/// round-trip number).
fn write_scalar(scalar: &Json, out: &mut String) {
    out.push_str(&scalar.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level_without_whitespace() {
        let mut out = String::new();
        write_canonical(
            &json!({"b": 1, "a": {"y": [true, null, "s"], "x": 2.5}}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":{"x":2.5,"y":[true,null,"s"]},"b":1}"#);
    }
}
