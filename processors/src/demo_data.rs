//! The demo's sample dataset (also the synthetic load of the ER benchmark
//! and crash test): people with realistic duplicates, in the
//! style of the Febrl generator (Christen, ANU): each original record may get
//! duplicates with typos, dropped or swapped fields and nicknames, the way
//! people are recorded twice by different clerks. Deterministic (seeded), so
//! every demo run shows the same figures.
//!
//! For each person: an `EntityUpserted` (v1), for some an address change
//! (v2) and for a few a delete (v3); duplicates are separate entities
//! (`<id>-dup-<k>`) for ER to find later; `KNOWS` / `WORKS_WITH`
//! relationships between people; and a handful of broken records that the
//! topology dead-letters.

use serde_json::{Value, json};

const GIVEN: &[&str] = &[
    "ada", "alan", "grace", "charles", "mary", "james", "olivia", "william", "emily", "thomas",
    "chloe", "jack", "lachlan", "isabella", "noah", "sophie", "liam", "matilda", "oscar", "ruby",
    "harrison", "zoe", "samuel", "lily", "joshua", "ella", "benjamin", "amelia", "daniel",
    "hannah", "lucas", "georgia", "ethan", "abbey", "riley", "jessica", "mitchell", "kayla",
    "connor", "madison",
];
const NICK: &[(&str, &str)] = &[
    ("william", "bill"),
    ("thomas", "tom"),
    ("james", "jim"),
    ("samuel", "sam"),
    ("benjamin", "ben"),
    ("daniel", "dan"),
    ("joshua", "josh"),
    ("isabella", "bella"),
];
const SURNAMES: &[&str] = &[
    "lovelace", "turing", "hopper", "babbage", "smith", "jones", "williams", "brown", "wilson",
    "taylor", "johnson", "white", "martin", "anderson", "thompson", "nguyen", "thomas", "walker",
    "harris", "lee", "ryan", "robinson", "kelly", "king", "davis", "wright", "evans", "roberts",
    "green", "hall", "wood", "jackson", "clarke", "berry", "purdon", "waller", "streich",
    "beazley", "lodder", "julius",
];
const STREETS: &[&str] = &[
    "tullaroop street",
    "giblin street",
    "goldfinch circuit",
    "maltby circuit",
    "ramsay place",
    "dumas street",
    "blacket street",
    "neworra place",
    "yerralee road",
    "florey drive",
    "kosciusko avenue",
    "messenger street",
    "birubi place",
    "maranoa street",
];
const SUBURBS: &[(&str, &str, &str)] = &[
    ("st james", "4011", "wa"),
    ("bittern", "4814", "qld"),
    ("canterbury", "2776", "vic"),
    ("coolaroo", "3465", "nsw"),
    ("garbutt", "2260", "vic"),
    ("mount immaney", "2281", "wa"),
    ("beverly hills", "2263", "nsw"),
    ("worongary", "6225", "qld"),
    ("carlsruhe", "3149", "qld"),
    ("yass", "2594", "nsw"),
    ("bayswater", "4870", "vic"),
    ("flemington", "2477", "qld"),
    ("rowville", "6152", "vic"),
    ("kingston", "2604", "act"),
];

/// A tiny deterministic PRNG (xorshift64*): the demo must not depend on a seed source.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One generated input: the topic and the JSON line (or raw bytes for broken ones).
pub struct DemoEvent {
    pub topic: &'static str,
    pub line: String,
}

pub const ENTITIES_TOPIC: &str = "ig.ingest.entities";
pub const RELATIONSHIPS_TOPIC: &str = "ig.ingest.relationships";

fn typo(rng: &mut Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 3 {
        return s.to_string();
    }
    let i = 1 + rng.below(c.len() - 2);
    match rng.below(3) {
        0 => c.swap(i, i + 1),
        1 => {
            c.remove(i);
        }
        _ => c[i] = *rng.pick(&['a', 'e', 'i', 'o', 'n', 'r', 's', 't']),
    }
    c.into_iter().collect()
}

fn person_attrs(rng: &mut Rng) -> serde_json::Map<String, Value> {
    let (suburb, postcode, state) = *rng.pick(SUBURBS);
    let dob = format!(
        "19{:02}{:02}{:02}",
        20 + rng.below(80),
        1 + rng.below(12),
        1 + rng.below(28)
    );
    let mut m = serde_json::Map::new();
    m.insert("given_name".into(), (*rng.pick(GIVEN)).into());
    m.insert("surname".into(), (*rng.pick(SURNAMES)).into());
    m.insert(
        "street_number".into(),
        (1 + rng.below(200)).to_string().into(),
    );
    m.insert("address_1".into(), (*rng.pick(STREETS)).into());
    m.insert("suburb".into(), suburb.into());
    m.insert("postcode".into(), postcode.into());
    m.insert("state".into(), state.into());
    m.insert("date_of_birth".into(), dob.into());
    m
}

fn corrupt(
    rng: &mut Rng,
    original: &serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    let mut m = original.clone();
    for _ in 0..1 + rng.below(3) {
        let field = *rng.pick(&[
            "given_name",
            "surname",
            "address_1",
            "suburb",
            "postcode",
            "date_of_birth",
            "street_number",
        ]);
        match rng.below(4) {
            0 => {
                m.remove(field);
            }
            1 if field == "given_name" => {
                let g = m
                    .get("given_name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Some((_, nick)) = NICK.iter().find(|(full, _)| *full == g) {
                    m.insert(field.into(), (*nick).into());
                }
            }
            _ => {
                if let Some(v) = m.get(field).and_then(Value::as_str).map(str::to_string) {
                    m.insert(field.into(), typo(rng, &v).into());
                }
            }
        }
    }
    m
}

fn ts(i: usize) -> String {
    let secs = 1_769_904_000 + i as i64; // 2026-02-01T00:00:00Z onwards, one per second
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn entity(
    tenant: &str,
    id: &str,
    version: i64,
    at: usize,
    attrs: &serde_json::Map<String, Value>,
) -> DemoEvent {
    let line = json!({"tenant": tenant, "kind": "EntityUpserted", "subject": id, "occurred_at": ts(at), "actor": "demo-ingest",
        "purpose": "demo", "source": "conductor-demo", "data": {"entity_type": "Person", "version": version, "attributes": attrs}});
    DemoEvent {
        topic: ENTITIES_TOPIC,
        line: line.to_string(),
    }
}

/// Generates the dataset for `people` people.
pub fn generate(people: usize, seed: u64) -> Vec<DemoEvent> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut ids = Vec::with_capacity(people);
    let mut clock = 0usize;
    for i in 0..people {
        let tenant = if rng.chance(70) { "acme" } else { "globex" };
        let id = format!("person-{i}");
        let attrs = person_attrs(&mut rng);
        clock += 1;
        out.push(entity(tenant, &id, 1, clock, &attrs));
        if rng.chance(25) {
            for k in 0..1 + rng.below(3) {
                clock += 1;
                out.push(entity(
                    tenant,
                    &format!("{id}-dup-{k}"),
                    1,
                    clock,
                    &corrupt(&mut rng, &attrs),
                ));
            }
        }
        if rng.chance(30) {
            let mut moved = attrs.clone();
            let (suburb, postcode, state) = *rng.pick(SUBURBS);
            moved.insert("address_1".into(), (*rng.pick(STREETS)).into());
            moved.insert("suburb".into(), suburb.into());
            moved.insert("postcode".into(), postcode.into());
            moved.insert("state".into(), state.into());
            clock += 1;
            out.push(entity(tenant, &id, 2, clock, &moved));
        }
        if rng.chance(4) {
            clock += 1;
            let line = json!({"tenant": tenant, "kind": "EntityDeleted", "subject": id, "occurred_at": ts(clock), "actor": "demo-ingest",
                "data": {"entity_type": "Person", "version": 3}});
            out.push(DemoEvent {
                topic: ENTITIES_TOPIC,
                line: line.to_string(),
            });
        }
        ids.push((tenant, id));
    }
    for (n, (tenant, src)) in ids.iter().enumerate() {
        for k in 0..rng.below(3) {
            let (t2, dst) = &ids[rng.below(ids.len())];
            if t2 != tenant || dst == src {
                continue;
            }
            clock += 1;
            let rel_type = if rng.chance(60) {
                "KNOWS"
            } else {
                "WORKS_WITH"
            };
            let line = json!({"tenant": tenant, "kind": "RelationshipUpserted", "subject": format!("rel-{n}-{k}"), "occurred_at": ts(clock),
                "actor": "demo-ingest", "data": {"rel_id": format!("rel-{n}-{k}"), "src": src, "dst": dst, "rel_type": rel_type, "version": 1,
                "attributes": {"confidence": (50 + rng.below(50)) as f64 / 100.0}}});
            out.push(DemoEvent {
                topic: RELATIONSHIPS_TOPIC,
                line: line.to_string(),
            });
        }
    }
    // A few broken records, as real feeds have: they go to ig.dlq.entities.
    let broken = [
        r#"{"tenant":"acme","kind":"EntityUpserted","subject":"person-x1","occurred_at":"2026-02-01T12:00:00Z","data":{"entity_type":"Person","version":"two","attributes":{}}}"#.to_string(),
        r#"{"tenant":"acme","kind":"EntityUpserted","subject":"person-x2","occurred_at":"yesterday","data":{"entity_type":"Person","version":1,"attributes":{}}}"#.to_string(),
        "{\"tenant\":\"acme\",\"kind\":\"EntityUpserted\", truncated".to_string(),
        r#"{"tenant":"globex","kind":"UsageRecorded","subject":"meter-1","occurred_at":"2026-02-01T12:00:00Z","data":{"usage_kind":"events","quantity":5}}"#.to_string(),
    ];
    for (i, line) in broken.into_iter().enumerate() {
        let at = (i + 1) * out.len() / 5;
        out.insert(
            at,
            DemoEvent {
                topic: ENTITIES_TOPIC,
                line,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_mostly_valid() {
        let a = generate(300, 7);
        let b = generate(300, 7);
        assert_eq!(
            a.iter().map(|e| &e.line).collect::<Vec<_>>(),
            b.iter().map(|e| &e.line).collect::<Vec<_>>()
        );
        let invalid = a
            .iter()
            .filter(|e| conductor_schemas::codec::decode_json(e.line.as_bytes(), None).is_err())
            .count();
        assert_eq!(
            invalid, 3,
            "three schema-invalid lines (the fourth broken one is valid but of the wrong kind)"
        );
        assert!(a.iter().any(|e| e.line.contains("-dup-")), "has duplicates");
        assert!(a.iter().any(|e| e.topic == RELATIONSHIPS_TOPIC));
    }
}
