//! `repartition`: every event of the sources, re-keyed onto another topic
//! — by tenant, so that all of a tenant's records meet in one partition, in
//! one order (Kafka Streams' repartition topic).
//!
//! A processor whose state spans a tenant's records (ER candidates, quota
//! accounting) must read such a topic: its state is then partition-local,
//! its output no longer depends on how a worker interleaves partitions, and
//! a rebuild, a restart or another worker owning the partition ends where
//! the live run did. Events are forwarded as they are (their ids kept),
//! re-encoded as JSON; undecodable input goes to this topology's DLQ.

use conductor_engine::processor::{Effect, EmitEvent, Processor, ProcessorError, ProcessorSpec};
use conductor_engine::projection::TableSpec;
use conductor_engine::runtime::config::ConfigProblem;
use conductor_schemas::Event;
use serde::{Deserialize, Serialize};

/// What the records are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepartitionKey {
    /// The event's tenant: a tenant's events meet in one partition.
    Tenant,
}

/// `[processor_config]` of `repartition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepartitionConfig {
    /// The topic to write (`ig.repartition.<reader>.by_tenant`); required.
    pub topic: String,
    /// What to key the records by.
    pub key: RepartitionKey,
    /// Partitions of `topic`, created with them when it doesn't exist.
    pub partitions: i32,
}

impl Default for RepartitionConfig {
    fn default() -> Self {
        RepartitionConfig {
            topic: String::new(),
            key: RepartitionKey::Tenant,
            partitions: 3,
        }
    }
}

/// The `repartition` spec.
pub struct RepartitionSpec;

impl ProcessorSpec for RepartitionSpec {
    type Config = RepartitionConfig;
    const NAME: &'static str = "repartition";
    const DESCRIPTION: &'static str =
        "events re-keyed by tenant onto another topic, so a tenant's records meet in one partition";

    fn check(config: &RepartitionConfig) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        if config.topic.trim().is_empty() {
            out.push(ConfigProblem {
                key: "topic".into(),
                message: "is required".into(),
                hint: Some("e.g. topic = \"ig.repartition.er_candidates.by_tenant\"".into()),
            });
        }
        if config.partitions < 1 {
            out.push(ConfigProblem {
                key: "partitions".into(),
                message: "must be at least 1".into(),
                hint: None,
            });
        }
        out
    }

    fn tables(_: &RepartitionConfig) -> Vec<TableSpec> {
        Vec::new()
    }

    fn build(config: RepartitionConfig) -> Box<dyn Processor> {
        Box::new(RepartitionProcessor { config })
    }
}

/// The `repartition` fold: one emitted event per input event.
pub struct RepartitionProcessor {
    pub config: RepartitionConfig,
}

impl Processor for RepartitionProcessor {
    fn name(&self) -> &str {
        "repartition"
    }

    fn tables(&self) -> Vec<TableSpec> {
        Vec::new()
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        let key = match self.config.key {
            RepartitionKey::Tenant => event.meta.tenant.clone(),
        };
        Ok(vec![Effect::Emit(Box::new(EmitEvent {
            topic: self.config.topic.clone(),
            event: event.clone(),
            key: Some(key),
        }))])
    }

    fn output_topics(&self) -> Vec<(String, i32)> {
        vec![(self.config.topic.clone(), self.config.partitions)]
    }
}

#[cfg(test)]
mod tests {
    use conductor_engine::runtime::driver::TopologyTestDriver;

    fn topology() -> conductor_engine::runtime::TopologyConfig {
        crate::parse_topology(
            "name = \"by_tenant\"\nprocessor = \"repartition\"\n[sources]\ntopics = [\"ig.ingest.entities\"]\n[changefeed]\nenabled = false\n[processor_config]\ntopic = \"ig.repartition.test.by_tenant\"\n",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn puts_each_tenants_events_in_one_partition_in_order() {
        let config = topology();
        let processor = crate::find("repartition")
            .unwrap()
            .build(&config.processor_config)
            .unwrap();
        let mut d = TopologyTestDriver::new(config, processor).await.unwrap();
        for i in 0..30 {
            let tenant = ["acme", "globex", "initech"][i % 3];
            d.pipe_json(
                "ig.ingest.entities",
                &conductor_engine::testing::entity_upserted_json(tenant, &format!("s{i}"), 1),
            )
            .await;
        }
        d.run_until_idle().await.unwrap();
        let out = d.output("ig.repartition.test.by_tenant").await;
        assert_eq!(out.len(), 30);
        let mut partition_of = std::collections::BTreeMap::new();
        for r in &out {
            let key = String::from_utf8(r.record.key.clone().unwrap()).unwrap();
            let p = partition_of.entry(key.clone()).or_insert(r.partition);
            assert_eq!(*p, r.partition, "tenant {key} split over partitions");
        }
        assert_eq!(partition_of.len(), 3);
    }

    #[test]
    fn requires_the_output_topic() {
        let problems = crate::find("repartition")
            .unwrap()
            .validate(&toml::Table::new());
        assert_eq!(problems[0].key, "processor_config.topic");
    }
}
