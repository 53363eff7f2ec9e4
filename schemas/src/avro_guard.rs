//! A pre-scan of Avro binary data that bounds what decoding it can cost.
//!
//! apache-avro allocates a string's, an array's or a map's buffer from the
//! length written in the data before reading it, capped only by the
//! process-wide `apache_avro::util::max_allocation_bytes` (512 MiB by default,
//! and settable only once per process, so a library must not pick it). A few
//! hostile bytes can therefore ask for hundreds of megabytes. This walk reads
//! the same bytes against the same schema without allocating and refuses any
//! length or item count larger than the bytes that remain, so data that passes
//! it decodes in memory proportional to its size. It also finds where the datum
//! ends, which lets callers reject trailing bytes, and it names the field where
//! the data went wrong.

use std::ops::Range;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, UuidSchema};

use crate::path::Path;
use crate::registry::{NamedTypes, deref};

/// Deepest nesting accepted; our schemas need 4, recursive writer schemas in
/// container files could otherwise recurse until the stack overflows.
const MAX_DEPTH: usize = 64;

/// Checks that `bytes` starts with one datum of `schema`; returns its length.
///
/// The error is a one-line reason naming the field.
pub(crate) fn datum_len(
    schema: &Schema,
    names: &NamedTypes,
    bytes: &[u8],
) -> Result<usize, String> {
    let mut cursor = Cursor { bytes, pos: 0 };
    cursor.walk(schema, names, Path::Root, 0)?;
    Ok(cursor.pos)
}

/// Reads a zig-zag varint `long` from the front of `bytes`, advancing it.
pub(crate) fn read_long(bytes: &mut &[u8]) -> Result<i64, &'static str> {
    let mut value: u64 = 0;
    for (index, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *bytes = &bytes[index + 1..];
            return Ok(zigzag(value));
        }
    }
    if bytes.len() >= 10 {
        Err("variable-length integer is longer than 10 bytes")
    } else {
        Err("truncated: the data ends inside a number")
    }
}

pub(crate) fn zigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

struct Cursor<'b> {
    bytes: &'b [u8],
    pos: usize,
}

impl<'b> Cursor<'b> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn long(&mut self, path: Path<'_>) -> Result<i64, String> {
        let mut rest = &self.bytes[self.pos..];
        let value = read_long(&mut rest).map_err(|reason| at(path, reason))?;
        self.pos = self.bytes.len() - rest.len();
        Ok(value)
    }

    fn skip(&mut self, len: usize, path: Path<'_>, what: &str) -> Result<(), String> {
        if len > self.remaining() {
            return Err(at(
                path,
                &format!(
                    "truncated: {what} of {len} bytes but only {} bytes remain",
                    self.remaining()
                ),
            ));
        }
        self.pos += len;
        Ok(())
    }

    /// A length or count written in the data: non-negative and no larger than
    /// the rest of the input (every item takes at least one byte in our schemas).
    fn length(&mut self, path: Path<'_>, what: &str) -> Result<usize, String> {
        let len = self.long(path)?;
        let len = usize::try_from(len).map_err(|_| at(path, &format!("negative {what} {len}")))?;
        if len > self.remaining() {
            return Err(at(
                path,
                &format!(
                    "{what} {len} is larger than the {} bytes that remain",
                    self.remaining()
                ),
            ));
        }
        Ok(len)
    }

    /// A length-prefixed byte string; returns where its payload lies.
    fn bytes_value(&mut self, path: Path<'_>, what: &str) -> Result<Range<usize>, String> {
        let len = self.length(path, &format!("{what} length"))?;
        let start = self.pos;
        self.skip(len, path, what)?;
        Ok(start..self.pos)
    }

    /// A length-prefixed UTF-8 string. Checked here because apache-avro would
    /// also fail on it, but without saying which field.
    fn text(&mut self, path: Path<'_>, what: &str) -> Result<&'b str, String> {
        let range = self.bytes_value(path, what)?;
        let bytes: &'b [u8] = self.bytes;
        std::str::from_utf8(&bytes[range])
            .map_err(|_| at(path, &format!("{what} is not valid UTF-8")))
    }

    fn walk(
        &mut self,
        schema: &Schema,
        names: &NamedTypes,
        path: Path<'_>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(at(path, "nested deeper than 64 levels"));
        }
        let schema = deref(schema, names)
            .ok_or_else(|| at(path, "schema refers to an undefined named type"))?;
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => {
                let byte = *self
                    .bytes
                    .get(self.pos)
                    .ok_or_else(|| at(path, "truncated: the data ends before a boolean"))?;
                if byte > 1 {
                    return Err(at(path, &format!("boolean byte is {byte}, not 0 or 1")));
                }
                self.pos += 1;
                Ok(())
            }
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                let value = self.long(path)?;
                i32::try_from(value)
                    .map(|_| ())
                    .map_err(|_| at(path, &format!("{value} does not fit an int")))
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long(path).map(|_| ()),
            Schema::Float => self.skip(4, path, "float"),
            Schema::Double => self.skip(8, path, "double"),
            Schema::String | Schema::Uuid(UuidSchema::String) => {
                self.text(path, "string").map(|_| ())
            }
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => {
                self.bytes_value(path, "bytes").map(|_| ())
            }
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Bytes => self.bytes_value(path, "bytes").map(|_| ()),
                InnerDecimalSchema::Fixed(fixed) => self.skip(fixed.size, path, "fixed"),
            },
            Schema::Uuid(UuidSchema::Fixed(fixed))
            | Schema::Fixed(fixed)
            | Schema::Duration(fixed) => self.skip(fixed.size, path, "fixed"),
            Schema::Enum(enum_schema) => {
                let index = self.long(path)?;
                if usize::try_from(index).is_ok_and(|i| i < enum_schema.symbols.len()) {
                    Ok(())
                } else {
                    Err(at(
                        path,
                        &format!(
                            "enum index {index} is out of range (the enum has {} symbols)",
                            enum_schema.symbols.len()
                        ),
                    ))
                }
            }
            Schema::Union(union) => {
                let index = self.long(path)?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| {
                        at(
                            path,
                            &format!(
                                "union branch {index} is out of range (the union has {} branches)",
                                union.variants().len()
                            ),
                        )
                    })?;
                self.walk(variant, names, path, depth + 1)
            }
            Schema::Record(record) => {
                for field in &record.fields {
                    self.walk(&field.schema, names, path.field(&field.name), depth + 1)?;
                }
                Ok(())
            }
            Schema::Array(array) => {
                let mut index = 0;
                self.blocks(path, |cursor| {
                    let item = path.index(index);
                    index += 1;
                    cursor.walk(&array.items, names, item, depth + 1)
                })
            }
            Schema::Map(map) => self.blocks(path, |cursor| {
                let key = cursor.text(path, "map key")?;
                cursor.walk(&map.types, names, path.key(key), depth + 1)
            }),
            Schema::Ref { .. } => Err(at(path, "schema refers to an undefined named type")),
        }
    }

    /// Array and map items come in blocks: a count (negative when followed by
    /// the block's size in bytes), the items, and a zero count at the end.
    fn blocks(
        &mut self,
        path: Path<'_>,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let count = self.long(path)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                // The block size lets readers skip; we walk the items anyway.
                self.length(path, "block size")?;
            }
            let count = count.unsigned_abs();
            if count > self.remaining() as u64 {
                return Err(at(
                    path,
                    &format!(
                        "item count {count} is larger than the {} bytes that remain",
                        self.remaining()
                    ),
                ));
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }
}

fn at(path: Path<'_>, reason: &str) -> String {
    if matches!(path, Path::Root) {
        reason.to_owned()
    } else {
        format!("{path}: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::named_types;

    fn schema(text: &str) -> (Schema, NamedTypes) {
        let schema = Schema::parse_str(text).expect("parses");
        let names = named_types(&schema).expect("names");
        (schema, names)
    }

    #[test]
    fn reads_zigzag_varints() {
        for (bytes, expected) in [
            (&[0x00][..], 0),
            (&[0x01][..], -1),
            (&[0x02][..], 1),
            (&[0x7f][..], -64),
            (&[0x80, 0x01][..], 64),
        ] {
            let mut rest = bytes;
            assert_eq!(read_long(&mut rest), Ok(expected));
            assert!(rest.is_empty());
        }
        let mut too_long = &[0xff; 11][..];
        assert!(read_long(&mut too_long).is_err());
    }

    #[test]
    fn measures_a_valid_datum() {
        let (schema, names) = schema(
            r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"},{"name":"n","type":"long"}]}"#,
        );
        // "ab" then 3, then a trailing byte.
        assert_eq!(
            datum_len(&schema, &names, &[0x04, b'a', b'b', 0x06, 0xff]),
            Ok(4)
        );
    }

    #[test]
    fn rejects_string_length_beyond_the_input_naming_the_field() {
        let (schema, names) =
            schema(r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#);
        // Length 2^40: would be a terabyte allocation if trusted.
        let error = datum_len(&schema, &names, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x40])
            .expect_err("rejected");
        assert!(error.starts_with("s: string length"), "{error}");
    }

    #[test]
    fn rejects_huge_item_counts_of_zero_sized_items() {
        let (schema, names) = schema(r#"{"type":"array","items":"null"}"#);
        let error =
            datum_len(&schema, &names, &[0xfe, 0xff, 0xff, 0xff, 0x0f]).expect_err("rejected");
        assert!(error.contains("item count"), "{error}");
    }

    #[test]
    fn rejects_out_of_range_union_branch() {
        let (schema, names) = schema(r#"["null","string"]"#);
        let error = datum_len(&schema, &names, &[0x04]).expect_err("rejected");
        assert!(error.contains("union branch 2"), "{error}");
    }

    #[test]
    fn rejects_invalid_utf8_strings() {
        let (schema, names) = schema(r#""string""#);
        assert!(datum_len(&schema, &names, &[0x02, 0xff]).is_err());
        assert_eq!(datum_len(&schema, &names, &[0x04, 0xc3, 0xa9]), Ok(3));
    }

    #[test]
    fn rejects_deeply_recursive_data() {
        let (schema, names) = schema(
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#,
        );
        let bytes = vec![0x02; 1000];
        let error = datum_len(&schema, &names, &bytes).expect_err("rejected");
        assert!(error.contains("nested deeper"), "{error}");
    }
}
