//! Validates a JSON event against its Avro schema, producing the Avro value.
//!
//! apache-avro's JSON support reports "value does not match schema" without a
//! field, and expects Avro's JSON encoding (unions wrapped as `{"string": ..}`).
//! Producers write plain JSON, so this walker takes plain JSON, walks it
//! together with the schema, and names the field and the problem on failure.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{RecordSchema, UnionSchema};
use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::avro_value::out_of_range;
use crate::error::SchemaError;
use crate::path::Path;
use crate::registry::{NamedTypes, deref};
use crate::types::datetime_from_micros;

/// The Avro value of `json` under `schema`, or the first problem found.
pub(crate) fn json_to_avro(
    schema: &Schema,
    names: &NamedTypes,
    json: &Json,
) -> Result<Value, SchemaError> {
    Walker { names }.walk(schema, json, Path::Root)
}

struct Walker<'n> {
    names: &'n NamedTypes,
}

impl Walker<'_> {
    fn walk(&self, schema: &Schema, json: &Json, path: Path<'_>) -> Result<Value, SchemaError> {
        let schema = deref(schema, self.names).ok_or_else(|| {
            SchemaError::field(path.to_string(), "schema refers to an undefined named type")
        })?;
        match (schema, json) {
            (Schema::Null, Json::Null) => Ok(Value::Null),
            (Schema::Boolean, Json::Bool(b)) => Ok(Value::Boolean(*b)),
            (Schema::Int, Json::Number(n)) => n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Value::Int)
                .ok_or_else(|| mismatch(path, schema, json)),
            (Schema::Long, Json::Number(n)) => match n.as_i64() {
                Some(n) => Ok(Value::Long(n)),
                None if n.is_u64() => Err(SchemaError::field(
                    path.to_string(),
                    format!("{n} is too large for a long (64-bit signed integer)"),
                )),
                None => Err(mismatch(path, schema, json)),
            },
            (Schema::Float, Json::Number(n)) => n
                .as_f64()
                .map(|x| Value::Float(x as f32))
                .ok_or_else(|| mismatch(path, schema, json)),
            (Schema::Double, Json::Number(n)) => n
                .as_f64()
                .map(Value::Double)
                .ok_or_else(|| mismatch(path, schema, json)),
            (Schema::String, Json::String(s)) => Ok(Value::String(s.clone())),
            (Schema::Bytes, Json::String(s)) => Ok(Value::Bytes(s.as_bytes().to_vec())),
            (Schema::Fixed(fixed), Json::String(s)) if s.len() == fixed.size => {
                Ok(Value::Fixed(fixed.size, s.as_bytes().to_vec()))
            }
            (Schema::Enum(enum_schema), Json::String(symbol)) => enum_schema
                .symbols
                .iter()
                .position(|known| known == symbol)
                .map(|index| Value::Enum(index as u32, symbol.clone()))
                .ok_or_else(|| {
                    SchemaError::field(
                        path.to_string(),
                        format!(
                            "{} is not one of {}",
                            describe(json),
                            enum_schema.symbols.join(", ")
                        ),
                    )
                }),
            (Schema::TimestampMicros, _) => timestamp(json, path, 1).map(Value::TimestampMicros),
            (Schema::TimestampMillis, _) => {
                timestamp(json, path, 1_000).map(Value::TimestampMillis)
            }
            (Schema::Array(array), Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| self.walk(&array.items, item, path.index(index)))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            (Schema::Map(map), Json::Object(entries)) => entries
                .iter()
                .map(|(key, value)| {
                    let value = self.walk(&map.types, value, path.key(key))?;
                    Ok((key.clone(), value))
                })
                .collect::<Result<HashMap<_, _>, _>>()
                .map(Value::Map),
            (Schema::Record(record), Json::Object(_)) => self.record(record, json, path),
            (Schema::Union(union), _) => self.union(union, json, path),
            _ => Err(mismatch(path, schema, json)),
        }
    }

    fn record(
        &self,
        record: &RecordSchema,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Value, SchemaError> {
        let Json::Object(object) = json else {
            return Err(SchemaError::field(path.to_string(), "expected an object"));
        };
        // Unknown fields first: a misspelt field would otherwise be reported as
        // the missing one, hiding the actual mistake.
        if let Some(unknown) = object
            .keys()
            .find(|key| !record.lookup.contains_key(key.as_str()))
        {
            let allowed: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
            let mut error = SchemaError::field(
                path.field(unknown).to_string(),
                format!("unknown field; allowed fields are {}", allowed.join(", ")),
            );
            if let Some(near) = allowed
                .iter()
                .filter(|name| !object.contains_key(**name))
                .find(|name| edit_distance(unknown, name) <= 2)
            {
                error = error.with_hint(format!("did you mean {near:?}?"));
            }
            return Err(error);
        }
        let mut fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let field_path = path.field(&field.name);
            let value = match (object.get(&field.name), &field.default) {
                (Some(value), _) => self.walk(&field.schema, value, field_path)?,
                (None, Some(default)) => self.walk(&field.schema, default, field_path)?,
                (None, None) => {
                    return Err(SchemaError::field(
                        field_path.to_string(),
                        format!(
                            "missing required field ({})",
                            expected(&field.schema, self.names)
                        ),
                    ));
                }
            };
            fields.push((field.name.clone(), value));
        }
        Ok(Value::Record(fields))
    }

    /// Plain JSON carries no branch tag, so the branch is chosen by the JSON
    /// type: null → the null branch, otherwise the first branch that takes
    /// this kind of JSON value.
    fn union(
        &self,
        union: &UnionSchema,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Value, SchemaError> {
        let variants = union.variants();
        let chosen = variants
            .iter()
            .position(|variant| self.accepts(variant, json));
        if let Some(index) = chosen {
            let value = self.walk(&variants[index], json, path)?;
            return Ok(Value::Union(index as u32, Box::new(value)));
        }
        let names: Vec<String> = variants
            .iter()
            .map(|variant| type_name(variant, self.names))
            .collect();
        let mut error = SchemaError::field(
            path.to_string(),
            format!(
                "expected one of {}, got {}",
                names.join(", "),
                describe(json)
            ),
        );
        let takes_nested = variants.iter().any(|variant| {
            matches!(
                deref(variant, self.names),
                Some(Schema::Record(_) | Schema::Map(_) | Schema::Array(_))
            )
        });
        if (json.is_object() || json.is_array()) && !takes_nested {
            error = error.with_hint(
                "values here must be scalars: flatten nested objects into dotted keys \
                 (e.g. \"address.city\") or store them as a JSON string",
            );
        }
        Err(error)
    }

    /// Whether a union branch takes this kind of JSON value (the walk into the
    /// chosen branch still checks ranges and contents).
    fn accepts(&self, variant: &Schema, json: &Json) -> bool {
        let Some(variant) = deref(variant, self.names) else {
            return false;
        };
        match json {
            Json::Null => matches!(variant, Schema::Null),
            Json::Bool(_) => matches!(variant, Schema::Boolean),
            Json::Number(n) if n.is_f64() => matches!(variant, Schema::Float | Schema::Double),
            Json::Number(n) => match variant {
                Schema::Int => n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                Schema::Long | Schema::TimestampMicros | Schema::TimestampMillis => n.is_i64(),
                Schema::Float | Schema::Double => true,
                _ => false,
            },
            Json::String(s) => match variant {
                Schema::String | Schema::Bytes => true,
                Schema::Enum(enum_schema) => enum_schema.symbols.iter().any(|known| known == s),
                Schema::TimestampMicros | Schema::TimestampMillis => true,
                _ => false,
            },
            Json::Array(_) => matches!(variant, Schema::Array(_)),
            Json::Object(_) => matches!(variant, Schema::Record(_) | Schema::Map(_)),
        }
    }
}

/// A timestamp as an RFC 3339 string or an integer count of `unit_micros`
/// microseconds since the epoch; returns the count in that unit.
fn timestamp(json: &Json, path: Path<'_>, unit_micros: i64) -> Result<i64, SchemaError> {
    let unit_name = if unit_micros == 1 {
        "microseconds"
    } else {
        "milliseconds"
    };
    let invalid = || {
        SchemaError::field(
            path.to_string(),
            format!(
                "expected an RFC 3339 timestamp or integer {unit_name} since the epoch, got {}",
                describe(json)
            ),
        )
        .with_hint("write timestamps like \"2026-02-01T12:00:00Z\"")
    };
    let micros = match json {
        Json::String(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| invalid())?
            .with_timezone(&Utc)
            .timestamp_micros(),
        Json::Number(n) => n
            .as_i64()
            .and_then(|count| count.checked_mul(unit_micros))
            .ok_or_else(invalid)?,
        _ => return Err(invalid()),
    };
    // Checked here (not only when building the Event) to report it against
    // the right field with the timestamp hint.
    if datetime_from_micros(micros).is_none() {
        return Err(SchemaError::field(path.to_string(), out_of_range(micros)));
    }
    Ok(micros / unit_micros)
}

fn mismatch(path: Path<'_>, schema: &Schema, json: &Json) -> SchemaError {
    SchemaError::field(
        path.to_string(),
        format!("expected {}, got {}", expected_bare(schema), describe(json)),
    )
}

/// What a schema expects, in words, following references.
fn expected(schema: &Schema, names: &NamedTypes) -> String {
    match deref(schema, names) {
        Some(schema @ Schema::Union(_)) => format!("one of {}", type_name(schema, names)),
        Some(schema) => expected_bare(schema),
        None => "an undefined type".to_owned(),
    }
}

fn expected_bare(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "a boolean".into(),
        Schema::Int => "an int (32-bit integer)".into(),
        Schema::Long => "a long (integer)".into(),
        Schema::Float | Schema::Double => "a double (number)".into(),
        Schema::String => "a string".into(),
        Schema::Bytes => "bytes (a string)".into(),
        Schema::Fixed(fixed) => format!("a string of exactly {} bytes", fixed.size),
        Schema::Enum(e) => format!("one of {}", e.symbols.join(", ")),
        Schema::Array(_) => "an array".into(),
        Schema::Map(_) => "an object (map)".into(),
        Schema::Record(_) => "an object".into(),
        Schema::TimestampMicros | Schema::TimestampMillis => "an RFC 3339 timestamp".into(),
        other => format!("a value of type {other:?} (not supported in JSON input)"),
    }
}

/// Short type name for union listings: `null, boolean, long, double, string`.
fn type_name(schema: &Schema, names: &NamedTypes) -> String {
    match deref(schema, names) {
        Some(Schema::Union(union)) => union
            .variants()
            .iter()
            .map(|variant| type_name(variant, names))
            .collect::<Vec<_>>()
            .join(", "),
        Some(Schema::Null) => "null".into(),
        Some(Schema::Boolean) => "boolean".into(),
        Some(Schema::Int) => "int".into(),
        Some(Schema::Long) => "long".into(),
        Some(Schema::Float) => "float".into(),
        Some(Schema::Double) => "double".into(),
        Some(Schema::String) => "string".into(),
        Some(Schema::Bytes) => "bytes".into(),
        Some(Schema::Array(_)) => "array".into(),
        Some(Schema::Map(_)) => "map".into(),
        Some(Schema::Record(record)) => record.name.name().into(),
        Some(Schema::Enum(e)) => e.name.name().into(),
        Some(Schema::TimestampMicros | Schema::TimestampMillis) => "timestamp".into(),
        Some(other) => format!("{other:?}"),
        None => "undefined".into(),
    }
}

/// `string "3"`, `number 3.5`, `object`: what the producer sent, briefly.
pub(crate) fn describe(json: &Json) -> String {
    const MAX_CHARS: usize = 40;
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) if s.chars().count() > MAX_CHARS => {
            let head: String = s.chars().take(MAX_CHARS).collect();
            format!("string {:?}…", head)
        }
        Json::String(s) => format!("string {s:?}"),
        Json::Array(_) => "array".into(),
        Json::Object(_) => "object".into(),
    }
}

/// Levenshtein distance, for "did you mean" hints on short field names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::named_types;
    use serde_json::json;

    fn check(schema: &str, json: Json) -> Result<Value, SchemaError> {
        let schema = Schema::parse_str(schema).expect("parses");
        let names = named_types(&schema).expect("names");
        json_to_avro(&schema, &names, &json)
    }

    const RECORD: &str = r#"{"type":"record","name":"R","fields":[
        {"name":"version","type":"long"},
        {"name":"label","type":["null","string"],"default":null},
        {"name":"attributes","type":{"type":"map","values":["null","boolean","long","double","string"]},"default":{}}
    ]}"#;

    #[test]
    fn fills_defaults_for_absent_fields() {
        let value = check(RECORD, json!({"version": 3})).expect("valid");
        assert_eq!(
            value,
            Value::Record(vec![
                ("version".into(), Value::Long(3)),
                ("label".into(), Value::Union(0, Box::new(Value::Null))),
                ("attributes".into(), Value::Map(HashMap::new())),
            ])
        );
    }

    #[test]
    fn rejects_string_where_long_expected_quoting_the_value() {
        let error = check(RECORD, json!({"version": "3"})).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            r#"version: expected a long (integer), got string "3""#
        );
    }

    #[test]
    fn rejects_fractional_and_too_large_longs() {
        let error = check(RECORD, json!({"version": 3.5})).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "version: expected a long (integer), got number 3.5"
        );
        let error = check(RECORD, json!({"version": u64::MAX})).expect_err("invalid");
        assert!(
            error.to_string().contains("too large for a long"),
            "{error}"
        );
    }

    #[test]
    fn rejects_unknown_field_listing_allowed_and_suggesting_near_miss() {
        let error = check(RECORD, json!({"verison": 3})).expect_err("invalid");
        assert_eq!(error.path(), "verison");
        assert!(
            error
                .message()
                .contains("allowed fields are version, label, attributes")
        );
        assert_eq!(error.hint(), Some("did you mean \"version\"?"));
    }

    #[test]
    fn rejects_nested_attribute_with_flatten_hint() {
        let error = check(
            RECORD,
            json!({"version": 1, "attributes": {"address": {"city": "x"}}}),
        )
        .expect_err("invalid");
        assert_eq!(error.path(), "attributes.address");
        assert!(error.message().contains("got object"), "{error}");
        assert!(error.hint().is_some_and(|hint| hint.contains("flatten")));
    }

    #[test]
    fn picks_attribute_union_branch_by_json_type() {
        let value = check(
            RECORD,
            json!({"version": 1, "attributes": {"n": 2, "x": 2.5, "b": false, "s": "t", "z": null}}),
        )
        .expect("valid");
        let Value::Record(fields) = value else {
            panic!("record")
        };
        let Value::Map(map) = &fields[2].1 else {
            panic!("map")
        };
        assert_eq!(map["n"], Value::Union(2, Box::new(Value::Long(2))));
        assert_eq!(map["x"], Value::Union(3, Box::new(Value::Double(2.5))));
        assert_eq!(map["b"], Value::Union(1, Box::new(Value::Boolean(false))));
        assert_eq!(
            map["s"],
            Value::Union(4, Box::new(Value::String("t".into())))
        );
        assert_eq!(map["z"], Value::Union(0, Box::new(Value::Null)));
    }

    #[test]
    fn accepts_rfc3339_and_integer_micros_timestamps() {
        let schema = r#"{"type":"long","logicalType":"timestamp-micros"}"#;
        assert_eq!(
            check(schema, json!("2026-02-01T13:00:00.5+01:00")).expect("valid"),
            Value::TimestampMicros(1_769_947_200_500_000)
        );
        assert_eq!(
            check(schema, json!(1_769_947_200_500_000_i64)).expect("valid"),
            Value::TimestampMicros(1_769_947_200_500_000)
        );
        let error = check(schema, json!("yesterday")).expect_err("invalid");
        assert!(error.message().contains("RFC 3339"), "{error}");
    }

    #[test]
    fn rejects_unknown_enum_symbol_listing_symbols() {
        let schema = r#"{"type":"enum","name":"E","symbols":["START","FAIL"]}"#;
        let error = check(schema, json!("BEGIN")).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            r#"string "BEGIN" is not one of START, FAIL"#
        );
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("version", "version"), 0);
        assert_eq!(edit_distance("verison", "version"), 2);
        assert_eq!(edit_distance("actr", "actor"), 1);
    }
}
