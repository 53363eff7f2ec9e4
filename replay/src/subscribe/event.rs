//! An event as subscribers get it: its JSON text and value, made once per
//! record and shared by every subscriber that receives the record live, so
//! that a record fanned out to a thousand subscribers is parsed once, not a
//! thousand times.

use conductor_engine::envelope::decode_event;
use conductor_engine::log::Record;
use serde_json::Value;
use std::sync::Arc;

/// A deliverable event: a JSON object.
#[derive(Clone, Debug)]
pub struct EventJson(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Compact JSON on one line (SSE `data:` and WebSocket messages embed it as is).
    text: Box<str>,
    value: Value,
}

impl EventJson {
    /// The event of a record: a JSON object value as it is (change events,
    /// JSON-encoded events), other events decoded through the schemas
    /// (Avro). `None` when the record holds neither.
    pub fn of(record: &Record) -> Option<EventJson> {
        if let Ok(value @ Value::Object(_)) = serde_json::from_slice::<Value>(&record.value) {
            // Keep the producer's bytes unless they span lines.
            let text = match std::str::from_utf8(&record.value) {
                Ok(t) if !t.contains(['\n', '\r']) => t.trim().into(),
                _ => value.to_string().into(),
            };
            return Some(EventJson(Arc::new(Inner { text, value })));
        }
        let value = serde_json::to_value(decode_event(record).ok()?).ok()?;
        Some(EventJson(Arc::new(Inner {
            text: value.to_string().into(),
            value,
        })))
    }

    pub fn text(&self) -> &str {
        &self.0.text
    }

    pub fn value(&self) -> &Value {
        &self.0.value
    }

    /// The event's own `tenant` field.
    pub fn tenant(&self) -> Option<&str> {
        self.0.value.get("tenant").and_then(Value::as_str)
    }
}

impl std::ops::Index<&str> for EventJson {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.0.value[key]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_json_text_on_one_line_and_refuses_what_is_not_an_event() {
        let one_line = Record::new(None, br#"{"tenant":"acme","n":1}"#.to_vec());
        let e = EventJson::of(&one_line).unwrap();
        assert_eq!(e.text(), r#"{"tenant":"acme","n":1}"#);
        assert_eq!((e.tenant(), &e["n"]), (Some("acme"), &Value::from(1)));
        let pretty = Record::new(None, b"{\r\n  \"tenant\": \"acme\"\r\n}".to_vec());
        assert_eq!(
            EventJson::of(&pretty).unwrap().text(),
            r#"{"tenant":"acme"}"#
        );
        assert!(EventJson::of(&Record::new(None, b"[1,2]".to_vec())).is_none());
        assert!(EventJson::of(&Record::new(None, b"\x00\x01garbage".to_vec())).is_none());
    }
}
