//! The one error type of this crate.

/// What went wrong, for routing (DLQ, reject with 400, halt). Callers branch on
/// this, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes are not JSON (or not a JSON object).
    InvalidJson,
    /// A field is missing, unknown, or has the wrong type or value.
    InvalidField,
    /// The event kind, schema name or Avro fingerprint is not one we know.
    UnknownSchema,
    /// A container file's writer schema cannot be read with our schema.
    IncompatibleSchema,
    /// The input is larger than the limit ([`crate::codec::MAX_EVENT_BYTES`]).
    Oversized,
    /// The Avro bytes are malformed: bad marker, truncated, trailing bytes,
    /// impossible lengths.
    CorruptAvro,
    /// A content type or container codec this build does not handle.
    Unsupported,
    /// Reading or writing the underlying stream failed.
    Io,
}

impl ErrorKind {
    /// Whether the input itself is at fault (retrying the same bytes cannot
    /// succeed), as opposed to the stream it came from.
    pub fn is_bad_input(self) -> bool {
        !matches!(self, ErrorKind::Io)
    }
}

/// A decoding, validation or encoding failure.
///
/// Displays as one line: `<path>: <message>` followed by `; hint: <hint>` when
/// there is advice to give, e.g.
/// `data.version: expected a long (integer), got string "3"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.one_line())]
pub struct SchemaError {
    kind: ErrorKind,
    path: String,
    message: String,
    hint: Option<String>,
}

impl SchemaError {
    /// An error about no particular field.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SchemaError {
            kind,
            path: String::new(),
            message: message.into(),
            hint: None,
        }
    }

    /// An [`ErrorKind::InvalidField`] error about the field at `path`.
    pub(crate) fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        SchemaError::new(ErrorKind::InvalidField, message).at(path)
    }

    pub(crate) fn at(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The same error about a field inside `prefix` (`data.event` +
    /// `run.runId` → `data.event.run.runId`).
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        self.path = if self.path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.path)
        };
        if self.kind == ErrorKind::InvalidJson {
            self.kind = ErrorKind::InvalidField;
        }
        self
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// What went wrong, for routing.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Dotted path of the offending field (`data.version`, `data.inputs[0].name`);
    /// empty when the error is not about one field.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The primary message, without path or hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Advice on how to fix the input, when there is any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    fn one_line(&self) -> String {
        let mut line = String::new();
        if !self.path.is_empty() {
            line.push_str(&self.path);
            line.push_str(": ");
        }
        line.push_str(&self.message);
        if let Some(hint) = &self.hint {
            line.push_str("; hint: ");
            line.push_str(hint);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_path_message_and_hint_on_one_line() {
        let error = SchemaError::field("data.attributes.address", "nested objects are not allowed")
            .with_hint("flatten it");
        assert_eq!(
            error.to_string(),
            "data.attributes.address: nested objects are not allowed; hint: flatten it"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidField);
        assert!(!error.to_string().contains('\n'));
    }

    #[test]
    fn displays_message_alone_when_no_path() {
        let error = SchemaError::new(ErrorKind::Oversized, "event is 2000000 bytes");
        assert_eq!(error.to_string(), "event is 2000000 bytes");
        assert_eq!(error.path(), "");
    }
}
