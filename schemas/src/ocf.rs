//! Avro Object Container Files: many events of one schema, with the writer
//! schema in the file header.
//!
//! Reading is done here rather than with `apache_avro::Reader`, which sizes
//! its buffers from lengths in the file before reading them (see
//! [`crate::avro_guard`]): header values and blocks are read with a cap and
//! grow only as bytes actually arrive, and each datum passes the guard before
//! apache-avro decodes (and, if needed, resolves) it. Writing uses apache-avro.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;

use crate::avro_guard::{self, zigzag};
use crate::avro_value::{event_from_avro, event_to_avro};
use crate::codec::{schema_of, with_event_id};
use crate::compat::read_problems;
use crate::error::{ErrorKind, SchemaError};
use crate::registry::{EventSchema, NamedTypes, SchemaRegistry, named_types};
use crate::types::Event;

const MAGIC: [u8; 4] = [b'O', b'b', b'j', 1];
const SYNC_LEN: usize = 16;
/// Largest header entry (the schema is the big one).
const MAX_HEADER_VALUE_BYTES: usize = 1024 * 1024;
/// Most header entries accepted.
const MAX_HEADER_ENTRIES: usize = 1024;
/// Largest block, compressed or not. Writers flush blocks of kilobytes to a
/// few megabytes; anything near this is corrupt or hostile.
const MAX_BLOCK_BYTES: usize = 64 * 1024 * 1024;

/// Reads the events of an Avro container file.
///
/// The file's writer schema is read with the registry schema named by
/// `schema`, or else the one named like the writer schema's record; data
/// written with an older or newer compatible version is resolved to ours. The
/// header is read before this returns; the iterator then yields one result per
/// record and stops after the first error.
pub fn read_ocf<R: Read>(
    reader: R,
    schema: Option<&str>,
) -> Result<impl Iterator<Item = Result<Event, SchemaError>> + use<R>, SchemaError> {
    let mut input = BufReader::new(reader);
    let header = read_header(&mut input)?;
    let registry = SchemaRegistry::builtin();
    let writer_name = header.writer.name().map(|name| name.fullname(None));
    let ours = match (schema, &writer_name) {
        (Some(name), _) => registry.get(name).ok_or_else(|| {
            SchemaError::new(ErrorKind::UnknownSchema, format!("unknown schema {name:?}"))
                .with_hint(format!("known schemas: {}", registry.names_list()))
        })?,
        (None, Some(writer_name)) => registry.get(writer_name).ok_or_else(|| {
            SchemaError::new(
                ErrorKind::UnknownSchema,
                format!("the container's schema {writer_name} is not a known event schema"),
            )
            .with_hint(format!(
                "name the schema to read it as (one of {})",
                registry.names_list()
            ))
        })?,
        (None, None) => {
            return Err(SchemaError::new(
                ErrorKind::UnknownSchema,
                "the container's schema is not a named record",
            )
            .with_hint(format!(
                "name the schema to read it as (one of {})",
                registry.names_list()
            )));
        }
    };
    let problems = read_problems(
        &header.writer,
        &header.writer_names,
        &ours.avro,
        ours.named_types(),
        schema.is_none(),
    );
    if let Some(first) = problems.first() {
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(SchemaError::new(
            ErrorKind::IncompatibleSchema,
            format!(
                "the container's schema {} cannot be read as {}: {first}{more}",
                writer_name.as_deref().unwrap_or("(unnamed)"),
                ours.name
            ),
        ));
    }
    let resolve = crate::registry::rabin_fingerprint(&header.writer) != ours.fingerprint;
    Ok(OcfEvents {
        input,
        header,
        ours,
        resolve,
        block: Vec::new(),
        position: 0,
        left_in_block: 0,
        record: 0,
        done: false,
    })
}

/// Writes `events` as an Avro container file (no compression) and returns the
/// writer. All events must be of one kind: a container holds one schema,
/// taken from the first event.
pub fn write_ocf<'e, W: Write>(
    events: impl IntoIterator<Item = &'e Event>,
    writer: W,
) -> Result<W, SchemaError> {
    let mut events = events.into_iter().peekable();
    let Some(first) = events.peek() else {
        return Err(SchemaError::new(
            ErrorKind::UnknownSchema,
            "no events to write: a container's schema is taken from its first event",
        ));
    };
    let schema = schema_of(first);
    let io_error = |error: apache_avro::Error| {
        SchemaError::new(ErrorKind::Io, format!("writing container: {error}"))
    };
    let mut container = apache_avro::Writer::new(&schema.avro, writer).map_err(io_error)?;
    for (index, event) in events.enumerate() {
        if event.kind() != schema.name {
            return Err(SchemaError::field(
                "kind",
                format!(
                    "event {index} is {} but the container holds {}; write one file per kind",
                    event.kind(),
                    schema.name
                ),
            ));
        }
        container
            .append_value_ref(&event_to_avro(event))
            .map_err(io_error)?;
    }
    container.into_inner().map_err(io_error)
}

struct Header {
    writer: Schema,
    writer_names: NamedTypes,
    codec: Codec,
    sync: [u8; SYNC_LEN],
}

#[derive(Debug, Clone, Copy)]
enum Codec {
    Null,
    Deflate,
}

fn read_header(input: &mut impl Read) -> Result<Header, SchemaError> {
    let mut magic = [0u8; 4];
    read_exact(input, &mut magic, "the container header")?;
    if magic != MAGIC {
        return Err(corrupt(
            "not an Avro container file (it does not start with Obj\\x01)",
        ));
    }
    let mut metadata: HashMap<String, Vec<u8>> = HashMap::new();
    loop {
        let count = read_long(input, "the container header")?
            .ok_or_else(|| corrupt("truncated container header"))?;
        if count == 0 {
            break;
        }
        if count < 0 {
            read_long(input, "the container header")?; // block size in bytes, unused
        }
        for _ in 0..count.unsigned_abs() {
            if metadata.len() >= MAX_HEADER_ENTRIES {
                return Err(corrupt("container header has too many entries"));
            }
            let key = read_bytes(input, MAX_HEADER_VALUE_BYTES, "a header key")?;
            let key = String::from_utf8(key).map_err(|_| corrupt("header key is not UTF-8"))?;
            let value = read_bytes(input, MAX_HEADER_VALUE_BYTES, "a header value")?;
            metadata.insert(key, value);
        }
    }
    let mut sync = [0u8; SYNC_LEN];
    read_exact(input, &mut sync, "the container header")?;

    let schema_text = metadata
        .get("avro.schema")
        .ok_or_else(|| corrupt("container header has no avro.schema"))?;
    let schema_text =
        std::str::from_utf8(schema_text).map_err(|_| corrupt("avro.schema is not UTF-8"))?;
    let writer = Schema::parse_str(schema_text)
        .map_err(|error| corrupt(&format!("container schema does not parse: {error}")))?;
    let writer_names = named_types(&writer)
        .map_err(|error| corrupt(&format!("container schema does not resolve: {error}")))?;
    let codec = match metadata.get("avro.codec").map(Vec::as_slice) {
        None | Some(b"null") => Codec::Null,
        Some(b"deflate") => Codec::Deflate,
        Some(other) => {
            return Err(SchemaError::new(
                ErrorKind::Unsupported,
                format!(
                    "container codec {:?} is not supported",
                    String::from_utf8_lossy(other)
                ),
            )
            .with_hint("write the file with the null or deflate codec"));
        }
    };
    Ok(Header {
        writer,
        writer_names,
        codec,
        sync,
    })
}

/// Lazily reads blocks and decodes their records.
struct OcfEvents<R> {
    input: BufReader<R>,
    header: Header,
    ours: &'static EventSchema,
    /// Whether the writer schema differs from ours and values need resolving.
    resolve: bool,
    block: Vec<u8>,
    position: usize,
    left_in_block: u64,
    /// Index of the next record in the file, for error messages.
    record: u64,
    done: bool,
}

impl<R: Read> OcfEvents<R> {
    /// Reads the next non-empty block; `false` at a clean end of file.
    fn next_block(&mut self) -> Result<bool, SchemaError> {
        loop {
            let Some(count) = read_long(&mut self.input, "a block header")? else {
                return Ok(false);
            };
            let size = read_long(&mut self.input, "a block header")?
                .ok_or_else(|| corrupt("truncated block header"))?;
            let (Ok(count), Ok(size)) = (u64::try_from(count), usize::try_from(size)) else {
                return Err(corrupt("negative block count or size"));
            };
            if size > MAX_BLOCK_BYTES {
                return Err(SchemaError::new(
                    ErrorKind::Oversized,
                    format!(
                        "container block of {size} bytes is larger than the limit of {MAX_BLOCK_BYTES}"
                    ),
                ));
            }
            let mut block = read_bytes_exact(&mut self.input, size, "a block")?;
            let mut sync = [0u8; SYNC_LEN];
            read_exact(&mut self.input, &mut sync, "a block")?;
            if sync != self.header.sync {
                return Err(corrupt("block does not end with the file's sync marker"));
            }
            if let Codec::Deflate = self.header.codec {
                block = miniz_oxide::inflate::decompress_to_vec_with_limit(&block, MAX_BLOCK_BYTES)
                    .map_err(|error| {
                        corrupt(&format!("deflate block does not inflate: {error}"))
                    })?;
            }
            // Every record takes at least one byte, so a larger count is a lie.
            if count > block.len() as u64 {
                return Err(corrupt(&format!(
                    "block claims {count} records in {} bytes",
                    block.len()
                )));
            }
            if count > 0 {
                self.block = block;
                self.position = 0;
                self.left_in_block = count;
                return Ok(true);
            }
        }
    }

    fn next_event(&mut self) -> Result<Option<Event>, SchemaError> {
        if self.left_in_block == 0 && !self.next_block()? {
            return Ok(None);
        }
        let rest = &self.block[self.position..];
        let len = avro_guard::datum_len(&self.header.writer, &self.header.writer_names, rest)
            .map_err(|reason| corrupt(&reason))?;
        let mut datum = &rest[..len];
        let reader_schema = self.resolve.then_some(&self.ours.avro);
        let value: Value = GenericDatumReader::builder(&self.header.writer)
            .maybe_reader_schema(reader_schema)
            .build()
            .and_then(|reader| reader.read_value(&mut datum))
            .map_err(|error| corrupt(&error.to_string()))?;
        self.position += len;
        self.left_in_block -= 1;
        if self.left_in_block == 0 && self.position != self.block.len() {
            return Err(corrupt(&format!(
                "{} unexpected bytes at the end of a block",
                self.block.len() - self.position
            )));
        }
        event_from_avro(self.ours.name, value)
            .map(with_event_id)
            .map(Some)
    }
}

impl<R: Read> Iterator for OcfEvents<R> {
    type Item = Result<Event, SchemaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let record = self.record;
        self.record += 1;
        match self.next_event() {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                // Past a bad block the framing is lost; stop rather than guess.
                self.done = true;
                let message = format!("record {record}: {}", error.message());
                let mut located = SchemaError::new(error.kind(), message).at(error.path());
                if let Some(hint) = error.hint() {
                    located = located.with_hint(hint);
                }
                Some(Err(located))
            }
        }
    }
}

fn corrupt(reason: &str) -> SchemaError {
    SchemaError::new(
        ErrorKind::CorruptAvro,
        format!("corrupt Avro container: {reason}"),
    )
}

fn read_error(error: io::Error, what: &str) -> SchemaError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        corrupt(&format!("truncated inside {what}"))
    } else {
        SchemaError::new(ErrorKind::Io, format!("reading {what}: {error}"))
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), SchemaError> {
    input
        .read_exact(buf)
        .map_err(|error| read_error(error, what))
}

/// A zig-zag varint; `None` at a clean end of input before its first byte.
fn read_long(input: &mut impl Read, what: &str) -> Result<Option<i64>, SchemaError> {
    let mut value: u64 = 0;
    for index in 0..10 {
        let mut byte = [0u8; 1];
        match input.read_exact(&mut byte) {
            Ok(()) => {}
            Err(error) if index == 0 && error.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(None);
            }
            Err(error) => return Err(read_error(error, what)),
        }
        value |= u64::from(byte[0] & 0x7f) << (7 * index);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(zigzag(value)));
        }
    }
    Err(corrupt(&format!("over-long number in {what}")))
}

/// A length-prefixed byte string of at most `limit` bytes.
fn read_bytes(input: &mut impl Read, limit: usize, what: &str) -> Result<Vec<u8>, SchemaError> {
    let len =
        read_long(input, what)?.ok_or_else(|| corrupt(&format!("truncated inside {what}")))?;
    let len = usize::try_from(len).map_err(|_| corrupt(&format!("negative length of {what}")))?;
    if len > limit {
        return Err(corrupt(&format!(
            "{what} of {len} bytes is over the {limit}-byte limit"
        )));
    }
    read_bytes_exact(input, len, what)
}

/// Exactly `len` bytes; the buffer grows with the bytes that really arrive,
/// so a lying length on a short input costs nothing.
fn read_bytes_exact(input: &mut impl Read, len: usize, what: &str) -> Result<Vec<u8>, SchemaError> {
    let mut buf = Vec::new();
    input
        .take(len as u64)
        .read_to_end(&mut buf)
        .map_err(|error| read_error(error, what))?;
    if buf.len() != len {
        return Err(corrupt(&format!("truncated inside {what}")));
    }
    Ok(buf)
}
