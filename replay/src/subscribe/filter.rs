//! Server-side filters of a subscription.
//!
//! A filter is a JSON object; every field given must match:
//! - `kind`: the event kind (`EntityUpserted`, …) of an ingest event, or the
//!   entity/relationship kind (`row.kind`) of a change event;
//! - `subject`: the event's subject, or the id of a change event's row
//!   (`key.entity_id`, `key.rel_id`);
//! - `table`, `op`: of a change event (`entities`, `upsert` | `delete`);
//! - `attributes`: `{name: value}` pairs, each equal to the event's
//!   `data.attributes` or the change's `row.attributes` entry.
//!
//! The tenant is never part of a filter: it comes from the token.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    kind: Option<String>,
    subject: Option<String>,
    table: Option<String>,
    op: Option<String>,
    attributes: Map<String, Value>,
}

impl Filter {
    /// Parses a filter, naming the field at fault when it is malformed.
    pub fn parse(value: Option<&Value>) -> Result<Filter, String> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(Filter::default());
        };
        let Value::Object(m) = value else {
            return Err("filter must be a JSON object".into());
        };
        let mut f = Filter::default();
        for (k, v) in m {
            let text = || {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("filter.{k} must be a string"))
            };
            match k.as_str() {
                "kind" => f.kind = Some(text()?),
                "subject" => f.subject = Some(text()?),
                "table" => f.table = Some(text()?),
                "op" => f.op = Some(text()?),
                "attributes" => match v {
                    Value::Object(a) => f.attributes = a.clone(),
                    _ => return Err("filter.attributes must be an object".into()),
                },
                other => {
                    return Err(format!(
                        "unknown filter field `{other}` (known: kind, subject, table, op, attributes)"
                    ));
                }
            }
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether `event` (an ingest event or a change event, as delivered) passes.
    pub fn matches(&self, event: &Value) -> bool {
        let row = event.get("row");
        let is_change = event.get("change_id").is_some();
        let str_at = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        if let Some(kind) = &self.kind {
            let actual = if is_change {
                str_at(row.and_then(|r| r.get("kind")))
            } else {
                str_at(event.get("kind"))
            };
            if actual.as_deref() != Some(kind) {
                return false;
            }
        }
        if let Some(subject) = &self.subject {
            let actual = if is_change {
                // The row's own id: `entity_id` / `rel_id`, or any key
                // column but the tenant (JSON object order is not relied on).
                event.get("key").and_then(Value::as_object).and_then(|k| {
                    k.get("entity_id")
                        .or_else(|| k.get("rel_id"))
                        .or_else(|| {
                            k.iter()
                                .find(|(name, _)| name.as_str() != "tenant_id")
                                .map(|(_, v)| v)
                        })
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
            } else {
                str_at(event.get("subject"))
            };
            if actual.as_deref() != Some(subject) {
                return false;
            }
        }
        if let Some(table) = &self.table
            && str_at(event.get("table")).as_deref() != Some(table)
        {
            return false;
        }
        if let Some(op) = &self.op
            && str_at(event.get("op")).as_deref() != Some(op)
        {
            return false;
        }
        if !self.attributes.is_empty() {
            let attrs = if is_change {
                row.and_then(|r| r.get("attributes"))
            } else {
                event.get("data").and_then(|d| d.get("attributes"))
            };
            let Some(attrs) = attrs.and_then(Value::as_object) else {
                return false;
            };
            if !self.attributes.iter().all(|(k, v)| attrs.get(k) == Some(v)) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change() -> Value {
        json!({"change_id": "c1", "table": "entities", "op": "upsert", "tenant": "acme",
               "key": {"tenant_id": "acme", "entity_id": "p1"},
               "row": {"kind": "Person", "attributes": {"city": "Oslo", "age": 41}}})
    }

    #[test]
    fn matches_change_events_by_every_field() {
        let f = |v: Value| Filter::parse(Some(&v)).unwrap();
        assert!(f(json!({})).matches(&change()));
        assert!(
            f(json!({"kind": "Person", "subject": "p1", "table": "entities", "op": "upsert"}))
                .matches(&change())
        );
        assert!(f(json!({"attributes": {"city": "Oslo", "age": 41}})).matches(&change()));
        assert!(!f(json!({"attributes": {"city": "Bergen"}})).matches(&change()));
        assert!(!f(json!({"kind": "Organization"})).matches(&change()));
        assert!(!f(json!({"op": "delete"})).matches(&change()));
        assert!(!f(json!({"subject": "p2"})).matches(&change()));
    }

    #[test]
    fn matches_ingest_events() {
        let e = json!({"kind": "EntityUpserted", "subject": "p1", "tenant": "acme",
                       "data": {"attributes": {"city": "Oslo"}}});
        let f = |v: Value| Filter::parse(Some(&v)).unwrap();
        assert!(
            f(json!({"kind": "EntityUpserted", "subject": "p1", "attributes": {"city": "Oslo"}}))
                .matches(&e)
        );
        assert!(!f(json!({"kind": "EntityDeleted"})).matches(&e));
    }

    #[test]
    fn bad_filters_name_the_field() {
        assert!(
            Filter::parse(Some(&json!([1])))
                .unwrap_err()
                .contains("object")
        );
        assert!(
            Filter::parse(Some(&json!({"kind": 3})))
                .unwrap_err()
                .contains("filter.kind")
        );
        assert!(
            Filter::parse(Some(&json!({"tenant": "x"})))
                .unwrap_err()
                .contains("unknown filter field `tenant`")
        );
    }
}
