//! The text embedded for an entity: a template over its attributes,
//! normalised, and its content hash. The text never leaves this module's
//! callers' memory: only the hash is recorded.

use conductor_schemas::{AttributeValue, Attributes};

/// A parsed template: literal text and `{attribute}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Attribute(String),
}

impl Template {
    pub fn parse(template: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                format!(
                    "unclosed `{{` at byte {}",
                    template.len() - rest.len() + open
                )
            })?;
            let name = after[..close].trim();
            if name.is_empty() || name.contains('{') {
                return Err(format!(
                    "`{{{}}}` is not an attribute name",
                    &after[..close]
                ));
            }
            parts.push(Part::Attribute(name.to_string()));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The attributes the template names.
    pub fn attributes(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Attribute(a) => Some(a.as_str()),
                Part::Literal(_) => None,
            })
            .collect()
    }

    /// The normalised text for `attributes`; empty when no named attribute
    /// has a value.
    pub fn render(&self, attributes: &Attributes) -> String {
        let mut raw = String::new();
        let mut any = false;
        for part in &self.parts {
            match part {
                Part::Literal(s) => raw.push_str(s),
                Part::Attribute(name) => {
                    if let Some(v) = attributes.get(name).and_then(value_text) {
                        any |= !v.trim().is_empty();
                        raw.push_str(&v);
                    }
                }
            }
        }
        if any { normalise(&raw) } else { String::new() }
    }
}

fn value_text(v: &AttributeValue) -> Option<String> {
    match v {
        AttributeValue::String(s) => Some(s.clone()),
        AttributeValue::Long(n) => Some(n.to_string()),
        AttributeValue::Double(x) => Some(x.to_string()),
        AttributeValue::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Lower case, letters and digits kept, everything else a space, spaces
/// collapsed: "O'Brien,  12 Main St." → "o brien 12 main st".
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

/// blake3 of the text, the model id and its version, hex: the content hash
/// that names one computation.
pub fn input_hash(text: &str, model: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(model.as_bytes());
    h.update(b"\n");
    h.update(text.as_bytes());
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), AttributeValue::String(v.to_string())))
            .collect()
    }

    #[test]
    fn renders_named_attributes_normalised() {
        let t = Template::parse("{given_name} {surname}, {suburb}").unwrap();
        assert_eq!(t.attributes(), vec!["given_name", "surname", "suburb"]);
        let text = t.render(&attrs(&[
            ("given_name", "Ada"),
            ("surname", "O'Brien-Lovelace"),
        ]));
        assert_eq!(text, "ada o brien lovelace");
        assert_eq!(
            t.render(&attrs(&[("other", "x")])),
            "",
            "no named attribute: empty"
        );
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        assert!(
            Template::parse("{given_name")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            Template::parse("{} x")
                .unwrap_err()
                .contains("not an attribute")
        );
    }

    #[test]
    fn the_hash_depends_on_text_and_model() {
        let a = input_hash("ada", "hashed-ngrams@1");
        assert_eq!(a, input_hash("ada", "hashed-ngrams@1"));
        assert_ne!(a, input_hash("ada", "minilm@1"));
        assert_ne!(a, input_hash("adb", "hashed-ngrams@1"));
        assert_eq!(a.len(), 64);
    }
}
