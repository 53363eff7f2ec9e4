//! Blocking keys: several per role, so that one typo, a missing value or a
//! swap rarely separates two records of one entity, while most records
//! share no key at all.
//!
//! | kind | from | survives |
//! |---|---|---|
//! | `name_phonetic` | Double Metaphone (both codes) of each name part | spelling variants, swapped parts |
//! | `name_prefix` | first 3 letters of each part | typos after the third letter |
//! | `name_pair` | both parts' first 2 letters, order-free | a typo in one part, swapped parts |
//! | `date` / `date_typo` / `date_swap` | the date; it with one digit masked; year + {month, day} | one wrong digit; day and month swapped |
//! | `identifier` / `identifier_typo` / `identifier_digits` | the id; one char masked; its sorted chars | one wrong char; a transposition |
//! | `postcode` | the postcode | — |
//! | `token` | text tokens of 5+ characters | other fields' typos |
//!
//! Keys are hashed (FNV-1a, stable across builds and runs: they live in
//! state snapshots) together with the entity type, so types never block together.

use super::features::Features;
use rphonetic::DoubleMetaphone;
use serde::{Deserialize, Serialize};

/// What kind of key proposed a pair (`methods` of a candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    NamePhonetic,
    NamePrefix,
    NamePair,
    Date,
    DateTypo,
    DateSwap,
    Identifier,
    IdentifierTypo,
    IdentifierDigits,
    Postcode,
    Token,
    /// Not a key: the nearest neighbours by vector (ANN).
    Ann,
}

impl KeyKind {
    pub const ALL: [KeyKind; 12] = [
        KeyKind::NamePhonetic,
        KeyKind::NamePrefix,
        KeyKind::NamePair,
        KeyKind::Date,
        KeyKind::DateTypo,
        KeyKind::DateSwap,
        KeyKind::Identifier,
        KeyKind::IdentifierTypo,
        KeyKind::IdentifierDigits,
        KeyKind::Postcode,
        KeyKind::Token,
        KeyKind::Ann,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KeyKind::NamePhonetic => "name_phonetic",
            KeyKind::NamePrefix => "name_prefix",
            KeyKind::NamePair => "name_pair",
            KeyKind::Date => "date",
            KeyKind::DateTypo => "date_typo",
            KeyKind::DateSwap => "date_swap",
            KeyKind::Identifier => "identifier",
            KeyKind::IdentifierTypo => "identifier_typo",
            KeyKind::IdentifierDigits => "identifier_digits",
            KeyKind::Postcode => "postcode",
            KeyKind::Token => "token",
            KeyKind::Ann => "ann",
        }
    }

    /// This kind's bit in a set of kinds.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// The kinds in a bit set, in declaration order.
    pub fn of_bits(bits: u16) -> Vec<KeyKind> {
        KeyKind::ALL
            .into_iter()
            .filter(|k| bits & k.bit() != 0)
            .collect()
    }
}

/// FNV-1a, 64 bits: stable, fast, no dependency. Parts are separated by
/// 0x1f; a key is hashed as it is built, without a string for it.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn byte(mut self, b: u8) -> Self {
        self.0 ^= b as u64;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        self
    }
    fn part(self, s: &str) -> Self {
        s.bytes().fold(self.byte(0x1f), Fnv::byte)
    }
    /// `s` with the byte at `i` replaced by `_` (keys are ASCII here: masked
    /// values are digits and lowercase letters).
    fn masked(self, s: &str, i: usize) -> Self {
        s.bytes().enumerate().fold(self.byte(0x1f), |h, (j, b)| {
            h.byte(if j == i { b'_' } else { b })
        })
    }
}

/// The key of one LSH band of a vector (see `super::ann`): the entity
/// type and the model keep other types' and models' vectors apart.
pub fn ann_key(entity_type: &str, model: &str, band: usize, code: u64) -> u64 {
    let h = entity_type
        .bytes()
        .fold(Fnv::new(), Fnv::byte)
        .part("ann")
        .part(model)
        .byte(band as u8)
        .byte((band >> 8) as u8);
    code.to_le_bytes().into_iter().fold(h, Fnv::byte).0
}

/// Every blocking key of a record of `entity_type`, without repeats.
pub fn keys(entity_type: &str, f: &Features) -> Vec<(KeyKind, u64)> {
    let mut out: Vec<(KeyKind, u64)> = Vec::with_capacity(48);
    let base = |tag: &str| entity_type.bytes().fold(Fnv::new(), Fnv::byte).part(tag);
    let add = |out: &mut Vec<(KeyKind, u64)>, kind: KeyKind, tag: &str, value: &str| {
        out.push((kind, base(tag).part(value).0));
    };
    let dm = DoubleMetaphone::default();
    let parts: Vec<&String> = f.names.iter().filter(|p| !p.is_empty()).collect();
    for p in &parts {
        let code = dm.double_metaphone(p);
        let (primary, alternate) = (code.primary(), code.alternate());
        if !primary.is_empty() {
            add(&mut out, KeyKind::NamePhonetic, "nph", &primary);
        }
        if !alternate.is_empty() && alternate != primary {
            add(&mut out, KeyKind::NamePhonetic, "nph", &alternate);
        }
        if let Some((end, _)) = p.char_indices().nth(2) {
            let prefix = &p[..end + p[end..].chars().next().map_or(0, char::len_utf8)];
            add(&mut out, KeyKind::NamePrefix, "npx", prefix);
        }
    }
    if let [a, b] = parts.as_slice() {
        let two = |s: &str| -> String { s.chars().take(2).collect() };
        let (x, y) = (two(a), two(b));
        let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
        out.push((KeyKind::NamePair, base("npr").part(&lo).part(&hi).0));
    }
    for d in &f.dates {
        add(&mut out, KeyKind::Date, "d", d);
        if d.is_ascii() {
            let typo = base("dt");
            for i in 0..d.len() {
                out.push((KeyKind::DateTypo, typo.masked(d, i).0));
            }
            let (y, m, day) = (&d[..4], &d[4..6], &d[6..8]);
            let (lo, hi) = if m <= day { (m, day) } else { (day, m) };
            out.push((KeyKind::DateSwap, base("ds").part(y).part(lo).part(hi).0));
        }
    }
    for id in &f.ids {
        add(&mut out, KeyKind::Identifier, "id", id);
        if id.is_ascii() && id.len() <= 16 {
            let typo = base("it");
            for i in 0..id.len() {
                out.push((KeyKind::IdentifierTypo, typo.masked(id, i).0));
            }
        }
        let mut sorted: Vec<char> = id.chars().collect();
        sorted.sort_unstable();
        add(
            &mut out,
            KeyKind::IdentifierDigits,
            "ids",
            &sorted.into_iter().collect::<String>(),
        );
    }
    for pc in &f.postcodes {
        add(&mut out, KeyKind::Postcode, "pc", pc);
    }
    for t in f.tokens.iter().filter(|t| t.chars().count() >= 5) {
        add(&mut out, KeyKind::Token, "tk", t);
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(given: &str, surname: &str, dob: &str, id: &str) -> Features {
        Features {
            names: vec![given.into(), surname.into()],
            dates: vec![dob.into()],
            ids: vec![id.into()],
            ..Default::default()
        }
    }

    fn shared(a: &Features, b: &Features) -> Vec<KeyKind> {
        let kb = keys("Person", b);
        let mut kinds: Vec<KeyKind> = keys("Person", a)
            .into_iter()
            .filter(|k| kb.contains(k))
            .map(|(k, _)| k)
            .collect();
        kinds.dedup();
        kinds
    }

    #[test]
    fn a_typo_in_every_field_still_shares_keys() {
        let a = person("mitchell", "green", "19560409", "1804974");
        let b = person("mitchel", "grene", "19560429", "1804947");
        let kinds = shared(&a, &b);
        assert!(kinds.contains(&KeyKind::DateTypo), "{kinds:?}");
        assert!(kinds.contains(&KeyKind::IdentifierDigits), "{kinds:?}");
        assert!(kinds.contains(&KeyKind::NamePrefix), "{kinds:?}");
    }

    #[test]
    fn swapped_names_and_day_month_share_keys() {
        let a = person("harley", "mccarthy", "19080419", "6089216");
        let b = person("mccarthy", "harley", "19081904", "");
        let kinds = shared(&a, &b);
        assert!(kinds.contains(&KeyKind::NamePair), "{kinds:?}");
        assert!(kinds.contains(&KeyKind::NamePhonetic), "{kinds:?}");
        assert!(kinds.contains(&KeyKind::DateSwap), "{kinds:?}");
    }

    #[test]
    fn types_never_block_together() {
        let a = person("ada", "lovelace", "18151210", "1");
        assert!(
            keys("Person", &a)
                .iter()
                .all(|k| !keys("Org", &a).contains(k))
        );
    }

    #[test]
    fn kinds_round_trip_through_bits() {
        let bits = KeyKind::Date.bit() | KeyKind::Ann.bit();
        assert_eq!(KeyKind::of_bits(bits), vec![KeyKind::Date, KeyKind::Ann]);
    }
}
