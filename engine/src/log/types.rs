//! Value types shared by every [`super::Log`] backend.

use serde::{Deserialize, Serialize};

/// One header of a record. Header keys are UTF-8; values are bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub key: String,
    pub value: Vec<u8>,
}

/// A record as appended: key, value, headers and the producer's timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Record {
    /// A record with a value and the current time.
    pub fn new(key: Option<Vec<u8>>, value: Vec<u8>) -> Self {
        Record {
            key,
            value,
            headers: Vec::new(),
            timestamp_ms: now_ms(),
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header {
            key: key.to_string(),
            value: value.into(),
        });
        self
    }

    /// The value of the first header named `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_slice())
    }

    /// Bytes this record occupies in payload terms (key + value + headers).
    pub fn payload_len(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>()
    }
}

/// A record read back from the log, with its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub record: Record,
}

/// Settings of a topic at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub partitions: i32,
    /// Records older than this are deleted (whole segments at a time); `None` keeps forever.
    #[serde(default)]
    pub retention_ms: Option<i64>,
    /// A partition is trimmed (oldest segments first) above this size; `None` is unbounded.
    #[serde(default)]
    pub retention_bytes: Option<u64>,
}

impl TopicConfig {
    /// `partitions` partitions, kept forever.
    pub fn with_partitions(partitions: i32) -> Self {
        TopicConfig {
            partitions,
            retention_ms: None,
            retention_bytes: None,
        }
    }
}

/// One partition's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    /// First readable offset (earlier ones were removed by retention).
    pub low_watermark: i64,
    /// The offset the next append gets.
    pub high_watermark: i64,
}

/// What `describe_topic` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicDescription {
    pub topic: String,
    pub partitions: Vec<PartitionInfo>,
}

/// Offsets given to an appended batch: `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedRange {
    pub first: i64,
    pub last: i64,
}

/// The address of an input record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One record to emit in a [`Transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub topic: String,
    pub partition: i32,
    pub record: Record,
    /// The input record this output was derived from, and its index among
    /// that input's outputs. Processing is deterministic, so this pair names
    /// the output for good: a writer recovering from a torn commit uses it to
    /// skip outputs that already reached the log.
    pub source: Option<(SourcePosition, u32)>,
}

/// A consumer group's next offset on one input partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputPosition {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read (one past the last processed record).
    pub next_offset: i64,
}

/// Outputs plus input positions, committed as one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub outputs: Vec<OutputRecord>,
    pub positions: Vec<InputPosition>,
}

/// Why a log operation failed. Callers decide on [`LogError::kind`], never on text.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "topic `{0}` does not exist (hint: create it with `conductor topic create {0} --partitions N`)"
    )]
    UnknownTopic(String),
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("topic `{topic}` has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        partitions: i32,
    },
    #[error("invalid topic name `{name}`: {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(
        "offset {requested} of {topic}[{partition}] is out of range: readable offsets are {low}..{high} (earlier records were removed by retention)"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        requested: i64,
        low: i64,
        high: i64,
    },
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("corrupt log data in {location}: {detail}")]
    Corrupt { location: String, detail: String },
    #[error(
        "writer `{writer_id}` (epoch {epoch}) was fenced by a newer writer with the same id; this process must stop writing"
    )]
    Fenced { writer_id: String, epoch: u64 },
    #[error("data directory {path} is locked by another process ({detail})")]
    Locked { path: String, detail: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A write or fsync of the file log failed. What was being written was
    /// not acknowledged; after a failed fsync the page cache may have dropped
    /// even what `write` accepted, so nothing is retried as if it had
    /// succeeded: the log takes no more writes ([`LogError::Stopped`]) and a
    /// restart recovers every acknowledged record.
    #[error(
        "the file log could not {operation} {path}: {source} (hint: the log takes no more writes; free space or fix the disk, then restart conductor, which recovers every acknowledged record)"
    )]
    WriteFailed {
        operation: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A write after [`LogError::WriteFailed`].
    #[error("the file log takes no more writes since an earlier failure: {first}")]
    Stopped { first: String },
    #[error("Kafka error during {operation}: {detail}")]
    Kafka {
        operation: String,
        detail: String,
        /// False when the broker refused for good (authorization, a record
        /// too large, an invalid topic or config): retrying won't help.
        retryable: bool,
        #[source]
        source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    },
    #[error("{0} is not supported by the {1} backend")]
    Unsupported(&'static str, &'static str),
}

/// Coarse class of a [`LogError`], for retry/halt decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogErrorKind {
    /// The caller asked for something wrong; retrying won't help.
    User,
    /// Data on disk is damaged; needs a human.
    Corruption,
    /// Another writer took over; stop.
    Fenced,
    /// I/O or broker trouble; may succeed on retry.
    Transient,
    /// The log can't be written any more (a failed write or fsync): stop;
    /// a restart recovers.
    Fatal,
}

impl LogError {
    /// Who is at fault and whether a retry can help.
    pub fn kind(&self) -> LogErrorKind {
        match self {
            LogError::UnknownTopic(_)
            | LogError::TopicExists(_)
            | LogError::UnknownPartition { .. }
            | LogError::InvalidTopicName { .. }
            | LogError::InvalidArgument(_)
            | LogError::OffsetOutOfRange { .. }
            | LogError::RecordTooLarge { .. }
            | LogError::Unsupported(..)
            | LogError::Locked { .. } => LogErrorKind::User,
            LogError::Corrupt { .. } => LogErrorKind::Corruption,
            LogError::WriteFailed { .. } | LogError::Stopped { .. } => LogErrorKind::Fatal,
            LogError::Fenced { .. } => LogErrorKind::Fenced,
            // A refusal a retry won't change is the caller's (or its config's) to fix.
            LogError::Kafka {
                retryable: false, ..
            } => LogErrorKind::User,
            LogError::Io { .. } | LogError::Kafka { .. } => LogErrorKind::Transient,
        }
    }

    /// A failed `write` (`operation` "write to") or fsync ("fsync") of the
    /// file log: see [`LogError::WriteFailed`].
    pub(crate) fn write_failed(
        operation: &'static str,
        path: impl AsRef<std::path::Path>,
        source: std::io::Error,
    ) -> Self {
        LogError::WriteFailed {
            operation,
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Largest record (key + value + headers) any backend accepts.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Checks a topic name: Kafka's rules (1–249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`).
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let bad = |reason: &str| {
        Err(LogError::InvalidTopicName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 249 {
        return bad("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are reserved");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!(
            "character {c:?} is not allowed (use letters, digits, `.`, `_`, `-`)"
        ));
    }
    Ok(())
}

/// Checks sizes of a batch before any backend touches it.
pub fn validate_records(records: &[Record]) -> Result<(), LogError> {
    for r in records {
        let size = r.payload_len();
        if size > MAX_RECORD_BYTES {
            return Err(LogError::RecordTooLarge {
                size,
                limit: MAX_RECORD_BYTES,
            });
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
