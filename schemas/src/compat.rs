//! Schema evolution checks: can readers of one schema read data written with
//! another? Behind `conductor schema check`.
//!
//! The walk follows Avro's schema resolution rules: records match fields by
//! name (or reader alias) and fill reader-only fields from their defaults;
//! enums need every written symbol (or a reader default); unions are matched
//! branch by branch; and primitives may be promoted int → long → float →
//! double, and string ↔ bytes. Unlike a yes/no answer, every problem is
//! reported with the field it concerns.

use std::collections::HashSet;
use std::fmt;
use std::path::Path as FsPath;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, UuidSchema};

use crate::registry::{NamedTypes, deref, named_types};

/// Which direction(s) a schema change must stay readable in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompatMode {
    /// New readers can read data written with the old schema (the default:
    /// consumers upgrade first).
    #[default]
    Backward,
    /// Old readers can read data written with the new schema (producers
    /// upgrade first).
    Forward,
    /// Both.
    Full,
}

impl FromStr for CompatMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "backward" => Ok(CompatMode::Backward),
            "forward" => Ok(CompatMode::Forward),
            "full" => Ok(CompatMode::Full),
            _ => Err(format!(
                "unknown compatibility mode {text:?}; expected backward, forward or full"
            )),
        }
    }
}

impl fmt::Display for CompatMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompatMode::Backward => "backward",
            CompatMode::Forward => "forward",
            CompatMode::Full => "full",
        })
    }
}

/// One reason a schema change is not compatible.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompatProblem {
    /// Dotted field path (`data.version`, `data.inputs[].name`); empty for
    /// the schema as a whole.
    pub path: String,
    /// What changed and who can no longer read what.
    pub reason: String,
}

impl fmt::Display for CompatProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "schema: {}", self.reason)
        } else {
            write!(f, "field {}: {}", self.path, self.reason)
        }
    }
}

/// Every problem found by [`check`]. Displays as a summary line followed by
/// one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CompatReport {
    /// The mode that was checked.
    pub mode: CompatMode,
    /// All problems, in schema order.
    pub problems: Vec<CompatProblem>,
}

impl fmt::Display for CompatReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "schema change is not {} compatible ({count} problem{})",
            self.mode,
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Checks that `new` (an `.avsc` text) may replace `old` under `mode`.
pub fn check(old: &str, new: &str, mode: CompatMode) -> Result<(), CompatReport> {
    check_labelled(old, "old schema", new, "new schema", mode)
}

/// [`check`] on two `.avsc` files; problems reading or parsing a file name it.
pub fn check_files(old: &FsPath, new: &FsPath, mode: CompatMode) -> Result<(), CompatReport> {
    let read = |path: &FsPath| {
        std::fs::read_to_string(path).map_err(|error| CompatProblem {
            path: String::new(),
            reason: format!("cannot read {}: {error}", path.display()),
        })
    };
    let (old_text, new_text) = (read(old), read(new));
    match (old_text, new_text) {
        (Ok(old_text), Ok(new_text)) => check_labelled(
            &old_text,
            &old.display().to_string(),
            &new_text,
            &new.display().to_string(),
            mode,
        ),
        (old_text, new_text) => Err(CompatReport {
            mode,
            problems: [old_text.err(), new_text.err()]
                .into_iter()
                .flatten()
                .collect(),
        }),
    }
}

fn check_labelled(
    old: &str,
    old_label: &str,
    new: &str,
    new_label: &str,
    mode: CompatMode,
) -> Result<(), CompatReport> {
    let parse = |text: &str, label: &str| {
        let schema = Schema::parse_str(text).map_err(|error| CompatProblem {
            path: String::new(),
            reason: format!("cannot parse {label}: {error}"),
        })?;
        let names = named_types(&schema).map_err(|error| CompatProblem {
            path: String::new(),
            reason: format!("cannot resolve named types of {label}: {error}"),
        })?;
        Ok::<_, CompatProblem>((schema, names))
    };
    let (old, new) = match (parse(old, old_label), parse(new, new_label)) {
        (Ok(old), Ok(new)) => (old, new),
        (old, new) => {
            return Err(CompatReport {
                mode,
                problems: [old.err(), new.err()].into_iter().flatten().collect(),
            });
        }
    };
    let mut problems = Vec::new();
    if matches!(mode, CompatMode::Backward | CompatMode::Full) {
        problems.extend(problems_reading(&old, &new, Direction::Backward));
    }
    if matches!(mode, CompatMode::Forward | CompatMode::Full) {
        problems.extend(problems_reading(&new, &old, Direction::Forward));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CompatReport { mode, problems })
    }
}

/// Problems a reader of `reader` has with data written with `writer`; used
/// for container files, whose writer schema comes with the data. With
/// `match_top_name` false the top-level record names may differ: the caller
/// named the schema to read the data as.
pub(crate) fn read_problems(
    writer: &Schema,
    writer_names: &NamedTypes,
    reader: &Schema,
    reader_names: &NamedTypes,
    match_top_name: bool,
) -> Vec<CompatProblem> {
    let mut walk = Walk::new(writer_names, reader_names, Direction::Data);
    walk.match_top_name = match_top_name;
    walk.can_read(writer, reader, "");
    walk.problems
}

fn problems_reading(
    (writer, writer_names): &(Schema, NamedTypes),
    (reader, reader_names): &(Schema, NamedTypes),
    direction: Direction,
) -> Vec<CompatProblem> {
    let mut walk = Walk::new(writer_names, reader_names, direction);
    walk.can_read(writer, reader, "");
    walk.problems
}

/// Which schema is old and which new, so reasons read in the user's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Writer = old, reader = new.
    Backward,
    /// Writer = new, reader = old.
    Forward,
    /// Writer = the data's schema, reader = ours (container files).
    Data,
}

impl Direction {
    fn consequence(self) -> &'static str {
        match self {
            Direction::Backward => "(new readers cannot read old data)",
            Direction::Forward => "(old readers cannot read new data)",
            Direction::Data => "(this data cannot be read with our schema)",
        }
    }

    /// (old, new) type names from (writer, reader) ones.
    fn old_new<'a>(self, writer: &'a str, reader: &'a str) -> (&'a str, &'a str) {
        match self {
            Direction::Forward => (reader, writer),
            Direction::Backward | Direction::Data => (writer, reader),
        }
    }
}

struct Walk<'n> {
    writer_names: &'n NamedTypes,
    reader_names: &'n NamedTypes,
    direction: Direction,
    problems: Vec<CompatProblem>,
    /// (writer, reader) named-type pairs being checked, so recursive types end.
    visiting: HashSet<(String, String)>,
    /// Whether the outermost record's name must match (Avro's rule).
    match_top_name: bool,
}

impl<'n> Walk<'n> {
    fn new(
        writer_names: &'n NamedTypes,
        reader_names: &'n NamedTypes,
        direction: Direction,
    ) -> Self {
        Walk {
            writer_names,
            reader_names,
            direction,
            problems: Vec::new(),
            visiting: HashSet::new(),
            match_top_name: true,
        }
    }

    fn problem(&mut self, path: &str, reason: String) {
        self.problems.push(CompatProblem {
            path: path.to_owned(),
            reason: format!("{reason} {}", self.direction.consequence()),
        });
    }

    /// Whether `reader` reads `writer` without any problem (for picking
    /// union branches), leaving no trace in the report.
    fn reads_cleanly(&mut self, writer: &Schema, reader: &Schema, path: &str) -> bool {
        let before = self.problems.len();
        self.can_read(writer, reader, path);
        let clean = self.problems.len() == before;
        self.problems.truncate(before);
        clean
    }

    fn type_changed(&mut self, path: &str, writer: &Schema, reader: &Schema) {
        let writer_name = type_name(writer, self.writer_names);
        let reader_name = type_name(reader, self.reader_names);
        let (old, new) = self.direction.old_new(&writer_name, &reader_name);
        let reason = format!("type changed from {old} to {new}");
        self.problem(path, reason);
    }

    fn can_read(&mut self, writer: &Schema, reader: &Schema, path: &str) {
        let (Some(writer), Some(reader)) = (
            deref(writer, self.writer_names),
            deref(reader, self.reader_names),
        ) else {
            self.problem(path, "schema refers to an undefined named type".into());
            return;
        };
        match (writer, reader) {
            (Schema::Union(writer_union), _) => {
                // Every branch the writer may have used must be readable.
                for branch in writer_union.variants() {
                    let readable = match reader {
                        Schema::Union(reader_union) => reader_union
                            .variants()
                            .iter()
                            .any(|candidate| self.reads_cleanly(branch, candidate, path)),
                        _ => self.reads_cleanly(branch, reader, path),
                    };
                    if !readable {
                        let branch_name = type_name(branch, self.writer_names);
                        let writer_name = type_name(writer, self.writer_names);
                        let reader_name = type_name(reader, self.reader_names);
                        let (old, new) = self.direction.old_new(&writer_name, &reader_name);
                        let reason = format!(
                            "type changed from {old} to {new}, which cannot hold {branch_name} values"
                        );
                        self.problem(path, reason);
                    }
                }
            }
            (_, Schema::Union(reader_union)) => {
                let readable = reader_union
                    .variants()
                    .iter()
                    .any(|candidate| self.reads_cleanly(writer, candidate, path));
                if !readable {
                    self.type_changed(path, writer, reader);
                }
            }
            (Schema::Record(w), Schema::Record(r)) => {
                let name_matters = self.match_top_name || !path.is_empty();
                if name_matters && !same_name(w.name.name(), r.name.name(), &r.aliases) {
                    self.renamed(path, "record", w.name.name(), r.name.name());
                    return;
                }
                let key = (w.name.fullname(None), r.name.fullname(None));
                if !self.visiting.insert(key.clone()) {
                    return;
                }
                for reader_field in &r.fields {
                    let field_path = join(path, &reader_field.name);
                    let writer_field = w.fields.iter().find(|field| {
                        field.name == reader_field.name
                            || reader_field.aliases.contains(&field.name)
                    });
                    match writer_field {
                        Some(writer_field) => {
                            self.can_read(&writer_field.schema, &reader_field.schema, &field_path)
                        }
                        None if reader_field.default.is_some() => {}
                        None => {
                            let reason = match self.direction {
                                Direction::Backward => "added without a default".to_owned(),
                                Direction::Forward => {
                                    "removed, and the old schema gives it no default".to_owned()
                                }
                                Direction::Data => {
                                    "missing from the data and our schema gives it no default"
                                        .to_owned()
                                }
                            };
                            self.problem(&field_path, reason);
                        }
                    }
                }
                self.visiting.remove(&key);
            }
            (Schema::Enum(w), Schema::Enum(r)) => {
                if !same_name(w.name.name(), r.name.name(), &r.aliases) {
                    self.renamed(path, "enum", w.name.name(), r.name.name());
                    return;
                }
                let unreadable: Vec<&str> = w
                    .symbols
                    .iter()
                    .filter(|symbol| !r.symbols.contains(symbol))
                    .map(String::as_str)
                    .collect();
                if !unreadable.is_empty() && r.default.is_none() {
                    let symbols = unreadable.join(", ");
                    let reason = match self.direction {
                        Direction::Backward => {
                            format!(
                                "enum symbol(s) {symbols} removed and the new enum has no default"
                            )
                        }
                        Direction::Forward => {
                            format!(
                                "enum symbol(s) {symbols} added and the old enum has no default"
                            )
                        }
                        Direction::Data => {
                            format!(
                                "enum symbol(s) {symbols} unknown to our schema, which has no default"
                            )
                        }
                    };
                    self.problem(path, reason);
                }
            }
            (Schema::Array(w), Schema::Array(r)) => {
                self.can_read(&w.items, &r.items, &format!("{path}[]"))
            }
            (Schema::Map(w), Schema::Map(r)) => {
                self.can_read(&w.types, &r.types, &format!("{path}{{}}"))
            }
            (Schema::Fixed(w), Schema::Fixed(r)) => {
                if !same_name(w.name.name(), r.name.name(), &r.aliases) {
                    self.renamed(path, "fixed", w.name.name(), r.name.name());
                } else if w.size != r.size {
                    let (old, new) = match self.direction {
                        Direction::Forward => (r.size, w.size),
                        _ => (w.size, r.size),
                    };
                    self.problem(path, format!("fixed size changed from {old} to {new}"));
                }
            }
            (writer, reader) => match (primitive(writer), primitive(reader)) {
                (Some(w), Some(r)) if promotes(w, r) => {}
                _ => self.type_changed(path, writer, reader),
            },
        }
    }

    fn renamed(&mut self, path: &str, what: &str, writer: &str, reader: &str) {
        let (old, new) = self.direction.old_new(writer, reader);
        let reason = format!("{what} renamed from {old} to {new} without an alias");
        self.problem(path, reason);
    }
}

/// Avro matches named types on their unqualified name or a reader alias.
fn same_name(
    writer: &str,
    reader: &str,
    reader_aliases: &Option<Vec<apache_avro::schema::Alias>>,
) -> bool {
    writer == reader
        || reader_aliases
            .iter()
            .flatten()
            .any(|alias| alias.name() == writer)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// The primitive a schema is encoded as (logical types are annotations on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primitive {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
}

fn primitive(schema: &Schema) -> Option<Primitive> {
    Some(match schema {
        Schema::Null => Primitive::Null,
        Schema::Boolean => Primitive::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Primitive::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Primitive::Long,
        Schema::Float => Primitive::Float,
        Schema::Double => Primitive::Double,
        Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => Primitive::Bytes,
        Schema::Decimal(decimal) if matches!(decimal.inner, InnerDecimalSchema::Bytes) => {
            Primitive::Bytes
        }
        Schema::String | Schema::Uuid(UuidSchema::String) => Primitive::String,
        _ => return None,
    })
}

/// Avro's promotions: a reader of `reader` can read a written `writer`.
fn promotes(writer: Primitive, reader: Primitive) -> bool {
    use Primitive::*;
    writer == reader
        || matches!(
            (writer, reader),
            (Int, Long | Float | Double)
                | (Long, Float | Double)
                | (Float, Double)
                | (String, Bytes)
                | (Bytes, String)
        )
}

/// Readable type name: `long`, `timestamp-micros`, `record Run`,
/// `array<record Dataset>`, `union [null, string]`.
fn type_name(schema: &Schema, names: &NamedTypes) -> String {
    let Some(schema) = deref(schema, names) else {
        return "undefined type".into();
    };
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Date => "date".into(),
        Schema::TimeMillis => "time-millis".into(),
        Schema::TimeMicros => "time-micros".into(),
        Schema::TimestampMillis => "timestamp-millis".into(),
        Schema::TimestampMicros => "timestamp-micros".into(),
        Schema::TimestampNanos => "timestamp-nanos".into(),
        Schema::LocalTimestampMillis => "local-timestamp-millis".into(),
        Schema::LocalTimestampMicros => "local-timestamp-micros".into(),
        Schema::LocalTimestampNanos => "local-timestamp-nanos".into(),
        Schema::Uuid(_) => "uuid".into(),
        Schema::Decimal(_) | Schema::BigDecimal => "decimal".into(),
        Schema::Duration(_) => "duration".into(),
        Schema::Record(record) => format!("record {}", record.name.name()),
        Schema::Enum(e) => format!("enum {}", e.name.name()),
        Schema::Fixed(fixed) => format!("fixed {}", fixed.name.name()),
        Schema::Array(array) => format!("array<{}>", type_name(&array.items, names)),
        Schema::Map(map) => format!("map<{}>", type_name(&map.types, names)),
        Schema::Union(union) => format!(
            "union [{}]",
            union
                .variants()
                .iter()
                .map(|variant| type_name(variant, names))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Schema::Ref { name } => name.fullname(None),
    }
}
