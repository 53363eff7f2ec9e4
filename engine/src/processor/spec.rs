//! Processor specs: what a processor registers so that a topology file can
//! name it — a name, a description, a typed config and the tables that config
//! implies — and the type-erased [`RegisteredProcessor`] the registry holds.
//!
//! A config struct is `#[serde(default, deny_unknown_fields)]` with doc
//! comments, and its `Default` is the one place defaults live. Validation
//! reports every problem of a `[processor_config]` table at once, each with
//! its key (`processor_config.table`), the way the rest of the topology file
//! is checked; `tables` needs no processor, so `conductor sql` and `replay`
//! find tables without building one.

use super::Processor;
use crate::projection::TableSpec;
use crate::runtime::config::ConfigProblem;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a processor registers.
pub trait ProcessorSpec: 'static {
    /// `#[serde(default, deny_unknown_fields)]`; `Default` holds the defaults.
    type Config: DeserializeOwned + Serialize + Default;
    /// The name a topology file gives in `processor = "…"`.
    const NAME: &'static str;
    /// One line for `conductor topology validate` and the docs.
    const DESCRIPTION: &'static str;

    /// Checks the types can't express (a table name that is not an SQL
    /// identifier, a threshold above 1), each with the key at fault relative
    /// to `[processor_config]`. The default finds nothing.
    fn check(config: &Self::Config) -> Vec<ConfigProblem> {
        let _ = config;
        Vec::new()
    }

    /// The projection tables a processor with this config writes.
    fn tables(config: &Self::Config) -> Vec<TableSpec>;

    /// The processor itself.
    fn build(config: Self::Config) -> Box<dyn Processor>;
}

/// A value, or every problem that kept it from being made.
pub type Checked<T> = Result<T, Vec<ConfigProblem>>;

/// A registry entry: a [`ProcessorSpec`] behind function pointers.
#[derive(Clone, Copy)]
pub struct RegisteredProcessor {
    pub name: &'static str,
    pub description: &'static str,
    build: fn(&toml::Table) -> Checked<Box<dyn Processor>>,
    tables: fn(&toml::Table) -> Checked<Vec<TableSpec>>,
    defaults: fn() -> toml::Table,
}

impl RegisteredProcessor {
    pub const fn of<S: ProcessorSpec>() -> Self {
        RegisteredProcessor {
            name: S::NAME,
            description: S::DESCRIPTION,
            build: |t| parse_config::<S>(t).map(S::build),
            tables: |t| parse_config::<S>(t).map(|c| S::tables(&c)),
            defaults: || toml::Table::try_from(S::Config::default()).unwrap_or_default(),
        }
    }

    /// Every problem of a `[processor_config]` table (keys prefixed
    /// `processor_config.`); empty when it is valid.
    pub fn validate(&self, config: &toml::Table) -> Vec<ConfigProblem> {
        (self.tables)(config).err().unwrap_or_default()
    }

    /// The tables a topology with this `[processor_config]` writes.
    pub fn tables(&self, config: &toml::Table) -> Result<Vec<TableSpec>, Vec<ConfigProblem>> {
        (self.tables)(config)
    }

    /// Builds the processor from a `[processor_config]` table.
    pub fn build(&self, config: &toml::Table) -> Result<Box<dyn Processor>, Vec<ConfigProblem>> {
        (self.build)(config)
    }

    /// The config with every default filled in (`conductor topology validate`
    /// prints it; the docs show it).
    pub fn defaults(&self) -> toml::Table {
        (self.defaults)()
    }
}

/// Deserializes a config, reporting every bad key: each key is tried on its
/// own over the defaults, so one mistake doesn't hide the next (serde stops at
/// the first), then the spec's own checks run on the whole config.
fn parse_config<S: ProcessorSpec>(table: &toml::Table) -> Result<S::Config, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    for (key, value) in table {
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        if let Err(e) = from_table::<S::Config>(one) {
            problems.push(ConfigProblem {
                key: format!("processor_config.{key}"),
                message: e.message().trim().to_string(),
                hint: Some(hint_for::<S>()),
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let config = from_table::<S::Config>(table.clone()).map_err(|e| {
        vec![ConfigProblem {
            key: "processor_config".into(),
            message: e.message().trim().to_string(),
            hint: Some(hint_for::<S>()),
        }]
    })?;
    let problems: Vec<ConfigProblem> = S::check(&config)
        .into_iter()
        .map(|mut p| {
            p.key = if p.key.is_empty() {
                "processor_config".into()
            } else {
                format!("processor_config.{}", p.key)
            };
            p
        })
        .collect();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// A problem when `name`, configured under `key`, can't name a table: a plain
/// SQL identifier (`[a-z_][a-z0-9_]*`, at most 40 characters, so the store's
/// derived names — indexes, shadow generations — stay under Postgres's 63).
pub fn check_table_name(key: &str, name: &str) -> Option<ConfigProblem> {
    let mut chars = name.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let ok_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let ok = ok_first && ok_rest && name.len() <= 40;
    (!ok).then(|| ConfigProblem {
        key: key.into(),
        message: format!("`{name}` is not a table name"),
        hint: Some(
            "use lower-case letters, digits and `_`, starting with a letter, at most 40 characters (e.g. \"entities_v2\")"
                .into(),
        ),
    })
}

/// A configured table name as the `&'static str` that [`TableSpec`] and row
/// effects carry. Each distinct name is leaked once per process (a topology
/// configures a handful), which keeps the hot path free of owned names.
pub fn static_table_name(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

fn hint_for<S: ProcessorSpec>() -> String {
    let defaults = toml::Table::try_from(S::Config::default()).unwrap_or_default();
    if defaults.is_empty() {
        format!(
            "the {} processor takes no configuration: remove [processor_config]",
            S::NAME
        )
    } else {
        let keys: Vec<&str> = defaults.keys().map(String::as_str).collect();
        format!("{} takes: {}", S::NAME, keys.join(", "))
    }
}

fn from_table<T: DeserializeOwned>(table: toml::Table) -> Result<T, toml::de::Error> {
    table.try_into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::LatestVersionProcessor;

    /// A config with two fields, for the validator.
    #[derive(Debug, Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Limits {
        /// Rows per tenant.
        max_rows: u32,
        table: String,
    }

    impl Default for Limits {
        fn default() -> Self {
            Limits {
                max_rows: 10,
                table: "latest_versions".into(),
            }
        }
    }

    struct LimitsSpec;

    impl ProcessorSpec for LimitsSpec {
        type Config = Limits;
        const NAME: &'static str = "limits";
        const DESCRIPTION: &'static str = "test";
        fn check(config: &Limits) -> Vec<ConfigProblem> {
            if config.table.is_empty() {
                vec![ConfigProblem {
                    key: "table".into(),
                    message: "is empty".into(),
                    hint: None,
                }]
            } else {
                vec![]
            }
        }
        fn tables(_: &Limits) -> Vec<TableSpec> {
            vec![crate::testing::latest_versions_table()]
        }
        fn build(_: Limits) -> Box<dyn Processor> {
            Box::new(LatestVersionProcessor)
        }
    }

    const LIMITS: RegisteredProcessor = RegisteredProcessor::of::<LimitsSpec>();

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn reports_every_bad_key_of_a_processor_config_at_once() {
        let problems = LIMITS.validate(&table("max_rowz = 3\ntable = 7\n"));
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["processor_config.max_rowz", "processor_config.table"]
        );
        assert!(
            problems[0].message.contains("unknown field"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].message.contains("invalid type"),
            "{}",
            problems[1]
        );
        assert!(
            problems[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("max_rows, table")
        );
    }

    #[test]
    fn runs_the_specs_own_checks_with_the_key_at_fault() {
        let problems = LIMITS.validate(&table("table = \"\"\n"));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "processor_config.table");
    }

    #[test]
    fn fills_defaults_and_builds_from_a_valid_config() {
        assert!(LIMITS.validate(&table("max_rows = 3\n")).is_empty());
        assert_eq!(
            LIMITS
                .defaults()
                .get("max_rows")
                .and_then(|v| v.as_integer()),
            Some(10)
        );
        assert_eq!(
            LIMITS.tables(&toml::Table::new()).unwrap()[0].name,
            "latest_versions"
        );
        assert!(LIMITS.build(&toml::Table::new()).is_ok());
    }

    #[test]
    fn table_names_are_checked_and_interned_once() {
        assert!(check_table_name("table", "entities_v2").is_none());
        for bad in [
            "",
            "Entities",
            "2nd",
            "a-b",
            "x; drop table y",
            &"a".repeat(41),
        ] {
            let p = check_table_name("table", bad).expect(bad);
            assert_eq!(p.key, "table");
        }
        let a = static_table_name("entities_v2");
        let b = static_table_name(&String::from("entities_v2"));
        assert!(std::ptr::eq(a, b));
    }
}
