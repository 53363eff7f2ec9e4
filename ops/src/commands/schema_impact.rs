//! Who a schema change touches (`conductor schema check --impact`): the
//! topics that carry events of the schema (read from the log: the
//! `ig-schema` header of their first records, or the decoded kind), the
//! topologies reading those topics, and everything downstream of those
//! topics in the lineage graph (Conductor's own runs and any other
//! producer's).

use crate::backend::{Access, open_log};
use crate::error::CliError;
use crate::settings::Settings;
use crate::topologies;
use conductor_engine::envelope::{HEADER_SCHEMA, decode_event};
use conductor_engine::log::Log;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Records looked at per partition to tell what a topic carries.
const SAMPLE: usize = 200;

/// What a change to one schema touches.
#[derive(Debug, Default)]
pub struct SchemaImpact {
    pub schema: String,
    pub topics: Vec<String>,
    pub topologies: Vec<String>,
    pub downstream_jobs: BTreeSet<String>,
    pub downstream_datasets: BTreeSet<String>,
}

impl SchemaImpact {
    pub fn touches_anyone(&self) -> bool {
        !self.topologies.is_empty() || !self.downstream_jobs.is_empty()
    }

    pub fn text(&self) -> String {
        let list = |v: Vec<&str>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut out = format!("impact of a change to {}:\n", self.schema);
        out += &format!(
            "  carried on:              {}\n",
            list(self.topics.iter().map(String::as_str).collect())
        );
        out += &format!(
            "  read by topologies:      {}\n",
            list(self.topologies.iter().map(String::as_str).collect())
        );
        out += &format!(
            "  downstream jobs:         {}\n",
            list(self.downstream_jobs.iter().map(String::as_str).collect())
        );
        out += &format!(
            "  downstream datasets:     {}\n",
            list(
                self.downstream_datasets
                    .iter()
                    .map(String::as_str)
                    .collect()
            )
        );
        out
    }
}

/// Whether `topic`'s first records are events of `schema`.
async fn carries(log: &dyn Log, topic: &str, schema: &str) -> bool {
    let Ok(description) = log.describe_topic(topic).await else {
        return false;
    };
    for p in description.partitions {
        let Ok(records) = log.read(topic, p.partition, p.low_watermark, SAMPLE).await else {
            continue;
        };
        for r in records {
            let kind = match r.record.header(HEADER_SCHEMA) {
                Some(h) => String::from_utf8_lossy(h).to_string(),
                None => match decode_event(&r.record) {
                    Ok(e) => e.kind().to_string(),
                    Err(_) => continue,
                },
            };
            if kind == schema {
                return true;
            }
        }
    }
    false
}

pub async fn impact(
    settings: &Settings,
    schema: &str,
    dir: Option<PathBuf>,
) -> Result<SchemaImpact, CliError> {
    let mut found = SchemaImpact {
        schema: schema.to_string(),
        ..SchemaImpact::default()
    };
    let Ok(log) = open_log(settings, Access::Read).await else {
        return Ok(found); // no log yet: nothing carries it
    };
    for topic in log.list_topics().await? {
        // Dead letters and graph mutations are not the schema's consumers' input.
        if topic.starts_with("ig.dlq.") || topic.starts_with("ig.graph.") {
            continue;
        }
        if carries(log.as_ref(), &topic, schema).await {
            found.topics.push(topic);
        }
    }
    let configs = topologies::load(dir, settings.topologies.clone())?;
    found.topologies = configs
        .iter()
        .filter(|c| c.sources.topics.iter().any(|t| found.topics.contains(t)))
        .map(|c| c.name.clone())
        .collect();
    let graph = super::lineage::load(settings, "lineage").await?;
    let (log_ns, _) = crate::run_lineage::namespaces(settings);
    for topic in &found.topics {
        let node = format!("dataset:{log_ns}:{topic}");
        if let Ok(i) = graph.impact(&settings.lineage.tenant, &node) {
            found.downstream_jobs.extend(i.jobs);
            found.downstream_datasets.extend(i.datasets);
        }
    }
    Ok(found)
}
