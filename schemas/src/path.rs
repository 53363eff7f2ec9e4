//! Field paths (`data.inputs[0].name`) for error messages.
//!
//! Walkers pass a borrowed chain of segments down the recursion and render it
//! only when something fails, so the happy path allocates nothing for paths.

use std::fmt;

/// One step from the root of an event to a value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    /// A record field.
    Field(&'a Path<'a>, &'a str),
    /// An array element.
    Index(&'a Path<'a>, usize),
    /// A map entry.
    Key(&'a Path<'a>, &'a str),
}

impl<'a> Path<'a> {
    pub(crate) fn field(&'a self, name: &'a str) -> Path<'a> {
        Path::Field(self, name)
    }

    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }

    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }
}

/// Map keys are shown like fields when they look like identifiers and quoted
/// otherwise, so `attributes["a.b"]` is not mistaken for a nested field.
fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(parent, name) => {
                if matches!(parent, Path::Root) {
                    f.write_str(name)
                } else {
                    write!(f, "{parent}.{name}")
                }
            }
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
            Path::Key(parent, key) if is_plain_key(key) => {
                if matches!(parent, Path::Root) {
                    f.write_str(key)
                } else {
                    write!(f, "{parent}.{key}")
                }
            }
            Path::Key(parent, key) => write!(f, "{parent}[{key:?}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_indexes_and_keys() {
        let root = Path::Root;
        let data = root.field("data");
        let inputs = data.field("inputs");
        let first = inputs.index(0);
        assert_eq!(first.field("name").to_string(), "data.inputs[0].name");
        let attributes = data.field("attributes");
        assert_eq!(
            attributes.key("surname").to_string(),
            "data.attributes.surname"
        );
        assert_eq!(
            attributes.key("a.b").to_string(),
            "data.attributes[\"a.b\"]"
        );
        assert_eq!(root.to_string(), "");
    }
}
