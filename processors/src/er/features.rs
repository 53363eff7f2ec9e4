//! A record's attributes, normalised by role: what keys and scores are made of.

use super::config::Roles;
use conductor_schemas::{AttributeValue, Attributes};
use serde::{Deserialize, Serialize};

/// One record, normalised. Missing attributes are empty strings in `names`
/// (part positions matter) and absent elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// Name parts in the configured order, lowercase letters only.
    pub names: Vec<String>,
    /// Dates as `YYYYMMDD`.
    pub dates: Vec<String>,
    /// Identifiers, lowercase letters and digits.
    pub ids: Vec<String>,
    /// Postcodes, lowercase letters and digits.
    pub postcodes: Vec<String>,
    /// Text tokens (lowercase, letters and digits), sorted, without repeats.
    pub tokens: Vec<String>,
}

fn text_of(value: &AttributeValue) -> Option<String> {
    match value {
        AttributeValue::String(s) => Some(s.clone()),
        AttributeValue::Long(n) => Some(n.to_string()),
        AttributeValue::Double(d) => Some(d.to_string()),
        AttributeValue::Bool(_) | AttributeValue::Null => None,
    }
}

fn keep(s: &str, f: impl Fn(char) -> bool) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| f(*c))
        .collect()
}

/// `YYYYMMDD` from `YYYYMMDD`, `YYYY-MM-DD` (or `/`, `.`) or `DD/MM/YYYY`;
/// `None` when it isn't a date of that shape.
pub fn normalise_date(raw: &str) -> Option<String> {
    let parts: Vec<&str> = raw
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .collect();
    let date = match parts.as_slice() {
        [one] if one.len() == 8 => one.to_string(),
        [y, m, d] if y.len() == 4 => format!("{y}{m:0>2}{d:0>2}"),
        [d, m, y] if y.len() == 4 => format!("{y}{m:0>2}{d:0>2}"),
        _ => return None,
    };
    (date.len() == 8).then_some(date)
}

impl Features {
    pub fn of(attributes: &Attributes, roles: &Roles) -> Features {
        let values = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter_map(|n| attributes.get(n).and_then(text_of))
                .collect()
        };
        let names = roles
            .name
            .iter()
            .map(|n| {
                attributes
                    .get(n)
                    .and_then(text_of)
                    .map(|s| keep(&s, char::is_alphabetic))
                    .unwrap_or_default()
            })
            .collect();
        let alnum = |s: &String| keep(s, char::is_alphanumeric);
        let mut tokens: Vec<String> = values(&roles.text)
            .iter()
            .flat_map(|t| {
                t.split(|c: char| !c.is_alphanumeric())
                    .map(|w| w.to_lowercase())
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
            })
            .collect();
        tokens.sort();
        tokens.dedup();
        Features {
            names,
            dates: values(&roles.date)
                .iter()
                .filter_map(|d| normalise_date(d))
                .collect(),
            ids: values(&roles.identifier)
                .iter()
                .map(alnum)
                .filter(|s| !s.is_empty())
                .collect(),
            postcodes: values(&roles.postcode)
                .iter()
                .map(alnum)
                .filter(|s| !s.is_empty())
                .collect(),
            tokens,
        }
    }

    /// Whether the record has nothing to compare.
    pub fn is_empty(&self) -> bool {
        self.names.iter().all(String::is_empty)
            && self.dates.is_empty()
            && self.ids.is_empty()
            && self.postcodes.is_empty()
            && self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dates_of_the_usual_shapes() {
        assert_eq!(normalise_date("19560409").as_deref(), Some("19560409"));
        assert_eq!(normalise_date("1956-4-9").as_deref(), Some("19560409"));
        assert_eq!(normalise_date("09/04/1956").as_deref(), Some("19560409"));
        assert_eq!(normalise_date("1956"), None);
        assert_eq!(normalise_date(""), None);
    }

    #[test]
    fn keeps_name_positions_and_tokenises_text() {
        let mut a = Attributes::new();
        a.insert(
            "surname".into(),
            AttributeValue::String("O'Brien-Smith".into()),
        );
        a.insert(
            "address_1".into(),
            AttributeValue::String("7 Wallaby  Place".into()),
        );
        a.insert("postcode".into(), AttributeValue::Long(2119));
        let f = Features::of(&a, &Roles::default());
        assert_eq!(f.names, vec!["".to_string(), "obriensmith".into()]);
        assert_eq!(f.postcodes, vec!["2119".to_string()]);
        assert_eq!(f.tokens, vec!["7", "place", "wallaby"]);
        assert!(f.dates.is_empty() && f.ids.is_empty());
    }
}
