//! `conductor catalog register|list|search|check`: the dataset catalog.
//!
//! A registration is a `DatasetRegistered` event on `ig.ingest.datasets`,
//! folded by the `lineage` topology into the `datasets` table (and the
//! dataset's node in the lineage graph), next to the datasets lineage
//! discovered — which stay marked unregistered until someone registers them.
//! `check` fails when a topology reads or writes an unregistered dataset.

use crate::backend::{Access, open_log, open_store};
use crate::cli::CatalogCommand;
use crate::error::CliError;
use crate::settings::Settings;
use crate::topologies;
use conductor_engine::envelope::{Encoding, event_key, event_record};
use conductor_engine::log::partition_for_key;
use conductor_engine::runtime::TopologyConfig;
use conductor_engine::runtime::worker::ensure_topic;
use conductor_engine::store::ProjectionStore;
use conductor_processors::lineage::{datasets_table, split_dataset_id};
use conductor_schemas::{DatasetRegistered, Event, EventData, EventMetadata};
use serde_json::Value;
use std::collections::BTreeMap;

/// Where registrations go: a source of the `lineage` topology.
pub const DATASETS_TOPIC: &str = "ig.ingest.datasets";

pub async fn run(settings: &Settings, cmd: CatalogCommand) -> Result<(), CliError> {
    match cmd {
        CatalogCommand::Register {
            dataset_id,
            tenant,
            name,
            license,
            purpose,
            retention,
            region,
            contract_version,
        } => {
            let (_, ns_name) = split_dataset_id(&dataset_id).ok_or_else(|| {
                CliError::usage(
                    format!("`{dataset_id}` is not a dataset id"),
                    "use dataset:NAMESPACE:NAME, as `conductor lineage` shows it (e.g. dataset:postgres://db:5432:public.orders)",
                )
            })?;
            if let Some(r) = &retention
                && !r.starts_with('P')
            {
                return Err(CliError::usage(
                    format!("--retention {r}: not an ISO 8601 duration"),
                    "e.g. --retention P365D (a year) or P6M",
                ));
            }
            let data = DatasetRegistered {
                dataset_id: dataset_id.clone(),
                name: name.unwrap_or_else(|| ns_name.to_string()),
                license,
                purpose,
                retention,
                region,
                contract_version,
            };
            let event = Event::new(
                EventMetadata {
                    event_id: String::new(),
                    tenant: tenant.clone(),
                    kind: String::new(),
                    subject: dataset_id.clone(),
                    occurred_at: chrono::Utc::now(),
                    actor: Some("conductor catalog register".into()),
                    purpose: None,
                    causation_id: None,
                    correlation_id: None,
                    source: None,
                },
                EventData::DatasetRegistered(data),
            );
            let mut event = event;
            event.meta.event_id = conductor_schemas::codec::derive_event_id(&event);
            let log = open_log(settings, Access::Write).await?;
            ensure_topic(log.as_ref(), DATASETS_TOPIC, 3).await?;
            let partitions = log.describe_topic(DATASETS_TOPIC).await?.partitions.len() as i32;
            let partition = partition_for_key(event_key(&event).as_bytes(), partitions);
            log.append(
                DATASETS_TOPIC,
                partition,
                vec![event_record(&event, Encoding::Json)],
            )
            .await?;
            println!(
                "registered {dataset_id} for tenant {tenant} on {DATASETS_TOPIC}; the lineage topology folds it into the datasets table"
            );
            Ok(())
        }
        CatalogCommand::List {
            tenant,
            filter,
            unregistered,
            json,
        } => {
            let rows = rows(settings).await?;
            let shown: Vec<&Value> = rows
                .iter()
                .filter(|r| tenant.as_deref().is_none_or(|t| r["tenant_id"] == t))
                .filter(|r| filter.matches(r))
                .filter(|r| !unregistered || r["registered"] != true)
                .collect();
            print_rows(&shown, json);
            Ok(())
        }
        CatalogCommand::Search {
            text,
            tenant,
            filter,
            json,
        } => {
            let needle = text.to_lowercase();
            let rows = rows(settings).await?;
            let shown: Vec<&Value> = rows
                .iter()
                .filter(|r| tenant.as_deref().is_none_or(|t| r["tenant_id"] == t))
                .filter(|r| filter.matches(r))
                .filter(|r| {
                    ["dataset_id", "name"].iter().any(|k| {
                        r[*k]
                            .as_str()
                            .is_some_and(|s| s.to_lowercase().contains(&needle))
                    })
                })
                .collect();
            print_rows(&shown, json);
            Ok(())
        }
        CatalogCommand::Check {
            topologies: dir,
            tenant,
        } => {
            let configs = topologies::load(dir, settings.topologies.clone())?;
            let store = open_store(settings).await?;
            let coverage = coverage(settings, store.as_ref(), &configs, &tenant).await?;
            for (topology, missing) in &coverage.unregistered {
                println!("{topology}: {} unregistered dataset(s)", missing.len());
                for d in missing {
                    println!("  {d}");
                }
            }
            println!(
                "catalog coverage: {} of {} datasets the topologies read and write are registered ({:.0} %)",
                coverage.registered,
                coverage.total,
                coverage.ratio() * 100.0
            );
            if coverage.unregistered.is_empty() {
                Ok(())
            } else {
                Err(CliError {
                    message: format!(
                        "{} topolog{} read or write unregistered datasets",
                        coverage.unregistered.len(),
                        if coverage.unregistered.len() == 1 { "y" } else { "ies" }
                    ),
                    hint: Some("register them: conductor catalog register DATASET_ID --license … --purpose … --retention …".into()),
                    exit_code: 1,
                })
            }
        }
    }
}

/// `--license`, `--purpose`, `--region` of list and search.
#[derive(clap::Args, Debug, Default)]
pub struct CatalogFilter {
    /// Only datasets under this licence.
    #[arg(long)]
    pub license: Option<String>,
    /// Only datasets that may be processed for this purpose.
    #[arg(long)]
    pub purpose: Option<String>,
    /// Only datasets stored in this region.
    #[arg(long)]
    pub region: Option<String>,
}

impl CatalogFilter {
    fn matches(&self, row: &Value) -> bool {
        let field = |k: &str, want: &Option<String>| want.as_deref().is_none_or(|w| row[k] == w);
        field("license", &self.license)
            && field("region", &self.region)
            && self.purpose.as_deref().is_none_or(|p| {
                row["purpose"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|x| x == p))
            })
    }
}

async fn rows(settings: &Settings) -> Result<Vec<Value>, CliError> {
    let store = open_store(settings).await?;
    let rows = store.dump_table(&datasets_table()).await?;
    Ok(rows)
}

fn print_rows(rows: &[&Value], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return;
    }
    println!("{} dataset(s)", rows.len());
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let purpose: Vec<&str> = r["purpose"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "  {}  {}  [{}]  {}  license {}  purpose {}  retention {}  region {}",
            s("tenant_id"),
            s("dataset_id"),
            if r["registered"] == true {
                "registered"
            } else {
                "unregistered"
            },
            s("name"),
            s("license"),
            if purpose.is_empty() {
                "-".to_string()
            } else {
                purpose.join(",")
            },
            s("retention"),
            s("region"),
        );
    }
}

/// How much of what the topologies read and write is registered.
pub struct Coverage {
    pub registered: usize,
    pub total: usize,
    /// Topology → its unregistered dataset ids.
    pub unregistered: BTreeMap<String, Vec<String>>,
}

impl Coverage {
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.registered as f64 / self.total as f64
        }
    }
}

/// The datasets `configs` read and write (as Conductor reports them in its
/// lineage), checked against `tenant`'s registrations.
pub async fn coverage(
    settings: &Settings,
    store: &dyn ProjectionStore,
    configs: &[TopologyConfig],
    tenant: &str,
) -> Result<Coverage, CliError> {
    let registered: std::collections::BTreeSet<String> = store
        .dump_table(&datasets_table())
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r["tenant_id"] == tenant && r["registered"] == true)
        .filter_map(|r| r["dataset_id"].as_str().map(str::to_string))
        .collect();
    let mut all = std::collections::BTreeSet::new();
    let mut unregistered = BTreeMap::new();
    for config in configs {
        let missing: Vec<String> = crate::run_lineage::dataset_ids(settings, config)
            .into_iter()
            .inspect(|d| {
                all.insert(d.clone());
            })
            .filter(|d| !registered.contains(d))
            .collect();
        if !missing.is_empty() {
            unregistered.insert(config.name.clone(), missing);
        }
    }
    Ok(Coverage {
        registered: all.iter().filter(|d| registered.contains(*d)).count(),
        total: all.len(),
        unregistered,
    })
}
