//! Topology files (`topologies/*.toml`): typed config and a validator that
//! reports every problem at once, each with the key at fault and a hint.

use crate::log::validate_topic_name;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One topology: where it reads, which processor folds, how it batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyConfig {
    /// Unique name; used in table, topic and metric names (`[a-z0-9_]`).
    pub name: String,
    /// A registered processor (`conductor topology validate` lists them).
    pub processor: String,
    #[serde(default)]
    pub description: String,
    pub sources: SourcesConfig,
    #[serde(default)]
    pub changefeed: ChangefeedConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub errors: ErrorPolicy,
    /// How often a stateful processor's state is snapshotted.
    #[serde(default)]
    pub state: StateConfig,
    /// Workers for this topology in one process.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Passed to the processor's factory.
    #[serde(default)]
    pub processor_config: toml::Table,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// Input topics; every partition of each is consumed.
    pub topics: Vec<String>,
    /// Where to begin on a partition with no stored position.
    #[serde(default)]
    pub start: StartFrom,
    /// Create missing source topics with this many partitions instead of
    /// refusing to start: for an ingest topic that only this topology reads
    /// and that clients write to after it starts (`ig.ingest.runs`, which
    /// `POST /api/v1/lineage` and any OpenLineage Kafka client append to).
    #[serde(default)]
    pub create_partitions: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangefeedConfig {
    /// Emit one change event per applied mutation.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Default `ig.changefeed.<name>`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Partitions when the runtime creates the topic.
    #[serde(default = "three")]
    pub partitions: i32,
}

fn yes() -> bool {
    true
}
fn three() -> i32 {
    3
}

impl Default for ChangefeedConfig {
    fn default() -> Self {
        ChangefeedConfig {
            enabled: true,
            topic: None,
            partitions: 3,
        }
    }
}

/// Snapshots of a stateful processor's state, written with a batch: at most
/// one per `snapshot_every_batches` batches or `snapshot_every_ms`,
/// whichever comes first (and one with the first batch and on drain). A
/// restart restores the snapshot and folds only what came after it, so
/// these bound the warm-up; each snapshot costs one write of the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default = "default_snapshot_every_batches")]
    pub snapshot_every_batches: u64,
    #[serde(default = "default_snapshot_every_ms")]
    pub snapshot_every_ms: u64,
}

fn default_snapshot_every_batches() -> u64 {
    100
}
fn default_snapshot_every_ms() -> u64 {
    60_000
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            snapshot_every_batches: default_snapshot_every_batches(),
            snapshot_every_ms: default_snapshot_every_ms(),
        }
    }
}

/// A batch closes at whichever limit comes first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// How long to wait for more input before committing a partial batch.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
}

fn default_max_events() -> usize {
    5000
}
fn default_max_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_linger_ms() -> u64 {
    20
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            linger_ms: default_linger_ms(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPolicy {
    /// What a processor's internal error does: stop the topology (`halt`) or
    /// dead-letter the event and go on (`dlq`). Undecodable and invalid input
    /// always goes to the DLQ: it never stops a partition.
    #[serde(default)]
    pub on_processor_error: OnError,
    /// Default `ig.dlq.<name>`.
    #[serde(default)]
    pub dlq_topic: Option<String>,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy {
            on_processor_error: OnError::Halt,
            dlq_topic: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    Halt,
    Dlq,
}

impl TopologyConfig {
    pub fn changefeed_topic(&self) -> String {
        self.changefeed
            .topic
            .clone()
            .unwrap_or_else(|| format!("ig.changefeed.{}", self.name))
    }

    /// Where the graph mutations of a processor with a graph go
    /// (`ig.graph.<name>`), for the graph sinks.
    pub fn graph_topic(&self) -> String {
        crate::graph::graph_topic(&self.name)
    }

    pub fn dlq_topic(&self) -> String {
        self.errors
            .dlq_topic
            .clone()
            .unwrap_or_else(|| format!("ig.dlq.{}", self.name))
    }
}

/// One thing wrong with a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `batch.linger_ms`; empty for the whole file.
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.key, self.message)?;
        }
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

fn problem(key: &str, message: impl Into<String>, hint: Option<String>) -> ConfigProblem {
    ConfigProblem {
        key: key.to_string(),
        message: message.into(),
        hint,
    }
}

/// Known keys per section, for unknown-key reports with suggestions.
const KNOWN: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "name",
            "processor",
            "description",
            "sources",
            "changefeed",
            "batch",
            "errors",
            "state",
            "parallelism",
            "processor_config",
        ],
    ),
    ("sources", &["topics", "start", "create_partitions"]),
    ("changefeed", &["enabled", "topic", "partitions"]),
    ("batch", &["max_events", "max_bytes", "linger_ms"]),
    ("errors", &["on_processor_error", "dlq_topic"]),
    ("state", &["snapshot_every_batches", "snapshot_every_ms"]),
];

fn closest<'a>(word: &str, options: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    options
        .iter()
        .map(|o| (distance(word, o), *o))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, o)| o)
}

/// Parses and validates a topology file. `processors` are the registered
/// processor names. Returns every problem found, not just the first.
pub fn parse_topology(
    text: &str,
    processors: &[&str],
) -> Result<TopologyConfig, Vec<ConfigProblem>> {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            return Err(vec![problem(
                "",
                format!("not valid TOML: {}", e.message().trim()),
                e.span().map(|s| format!("at byte {}", s.start)),
            )]);
        }
    };
    let mut problems = Vec::new();
    for (section, keys) in KNOWN {
        let sub = if section.is_empty() {
            Some(&table)
        } else {
            table.get(*section).and_then(|v| v.as_table())
        };
        let Some(sub) = sub else { continue };
        for key in sub.keys() {
            if !keys.contains(&key.as_str()) {
                let full = if section.is_empty() {
                    key.clone()
                } else {
                    format!("{section}.{key}")
                };
                let hint = closest(key, keys)
                    .map(|c| format!("did you mean `{c}`?"))
                    .or_else(|| Some(format!("known keys: {}", keys.join(", "))));
                problems.push(problem(&full, "unknown key", hint));
            }
        }
    }
    for required in ["name", "processor", "sources"] {
        if !table.contains_key(required) {
            problems.push(problem(required, "is required", None));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let config: TopologyConfig = match toml::Table::try_into(table) {
        Ok(c) => c,
        Err(e) => return Err(vec![problem("", e.message().trim().to_string(), None)]),
    };
    problems.extend(check(&config, processors));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn check(c: &TopologyConfig, processors: &[&str]) -> Vec<ConfigProblem> {
    let mut p = Vec::new();
    if c.name.is_empty()
        || !c
            .name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
    {
        p.push(problem(
            "name",
            format!("`{}` is not a valid topology name", c.name),
            Some("use lowercase letters, digits and `_`".into()),
        ));
    }
    if !processors.contains(&c.processor.as_str()) {
        p.push(problem(
            "processor",
            format!("unknown processor `{}`", c.processor),
            Some(format!("registered processors: {}", processors.join(", "))),
        ));
    }
    if c.sources.topics.is_empty() {
        p.push(problem(
            "sources.topics",
            "lists no topic",
            Some("e.g. topics = [\"ig.ingest.entities\"]".into()),
        ));
    }
    for (i, t) in c.sources.topics.iter().enumerate() {
        if let Err(e) = validate_topic_name(t) {
            p.push(problem(
                &format!("sources.topics[{i}]"),
                e.to_string(),
                None,
            ));
        }
    }
    for (key, topic) in [
        ("changefeed.topic", &c.changefeed.topic),
        ("errors.dlq_topic", &c.errors.dlq_topic),
    ] {
        if let Some(t) = topic
            && let Err(e) = validate_topic_name(t)
        {
            p.push(problem(key, e.to_string(), None));
        }
    }
    if let Some(n) = c.sources.create_partitions
        && !(1..=1000).contains(&n)
    {
        p.push(problem(
            "sources.create_partitions",
            format!("must be 1..=1000, got {n}"),
            None,
        ));
    }
    if !(1..=1000).contains(&c.changefeed.partitions) {
        p.push(problem(
            "changefeed.partitions",
            format!("must be 1..=1000, got {}", c.changefeed.partitions),
            None,
        ));
    }
    if c.batch.max_events == 0 || c.batch.max_events > 1_000_000 {
        p.push(problem(
            "batch.max_events",
            format!("must be 1..=1000000, got {}", c.batch.max_events),
            Some("5000 is a good start".into()),
        ));
    }
    if c.batch.max_bytes < 1024 {
        p.push(problem(
            "batch.max_bytes",
            format!("must be at least 1024, got {}", c.batch.max_bytes),
            None,
        ));
    }
    if c.batch.linger_ms > 60_000 {
        p.push(problem(
            "batch.linger_ms",
            format!(
                "must be at most 60000 (one minute), got {}",
                c.batch.linger_ms
            ),
            Some("batches also close at max_events".into()),
        ));
    }
    if c.parallelism != 1 {
        p.push(problem(
            "parallelism",
            format!(
                "{} workers per topology is not supported yet",
                c.parallelism
            ),
            Some("set 1; a worker already consumes every partition in order".into()),
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "entities"
        processor = "entities"
        [sources]
        topics = ["ig.ingest.entities", "ig.ingest.relationships"]
        [batch]
        max_events = 1000
    "#;

    #[test]
    fn parses_a_valid_topology_with_defaults() {
        let c = parse_topology(GOOD, &["entities"]).unwrap();
        assert_eq!(c.batch.max_events, 1000);
        assert_eq!(c.batch.linger_ms, 20);
        assert_eq!(c.changefeed_topic(), "ig.changefeed.entities");
        assert_eq!(c.dlq_topic(), "ig.dlq.entities");
        assert_eq!(c.errors.on_processor_error, OnError::Halt);
    }

    #[test]
    fn reports_every_problem_at_once_with_keys_and_hints() {
        let text = r#"
            name = "Bad Name"
            processor = "entitys"
            parallelism = 4
            [sources]
            topics = ["ok", "bad/topic"]
            [batch]
            max_events = 0
            linger_ms = 999999
        "#;
        let problems = parse_topology(text, &["entities"]).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "name",
            "processor",
            "parallelism",
            "sources.topics[1]",
            "batch.max_events",
            "batch.linger_ms",
        ] {
            assert!(keys.contains(&k), "missing {k} in {problems:?}");
        }
        let processor = problems.iter().find(|p| p.key == "processor").unwrap();
        assert!(
            processor
                .to_string()
                .contains("registered processors: entities")
        );
    }

    #[test]
    fn suggests_the_key_that_was_meant() {
        let text = "name = \"x\"\nprocesor = \"entities\"\n[sources]\ntopics=[\"a\"]\n[batch]\nlinger = 5\n";
        let problems = parse_topology(text, &["entities"]).unwrap_err();
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|s| s.contains("procesor") && s.contains("did you mean `processor`")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("batch.linger") && s.contains("linger_ms")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("processor: is required")),
            "{shown:?}"
        );
    }

    #[test]
    fn reports_wrong_types_and_bad_toml() {
        let problems = parse_topology(
            "name = 3\nprocessor = \"entities\"\n[sources]\ntopics = [\"a\"]\n",
            &["entities"],
        )
        .unwrap_err();
        assert!(problems[0].message.contains("string"), "{problems:?}");
        let problems = parse_topology("name = [", &["entities"]).unwrap_err();
        assert!(problems[0].message.contains("not valid TOML"));
    }
}
