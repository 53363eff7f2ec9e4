//! An in-process topology test driver, in the spirit of Kafka Streams'
//! `TopologyTestDriver`: no broker, no database — a memory log and a memory
//! store — but the same worker, fold and relay code as production.
//!
//! ```ignore
//! let mut d = TopologyTestDriver::new(config, Box::new(EntitiesProcessor)).await?;
//! d.pipe_json("ig.ingest.entities", r#"{"tenant":"acme",...}"#).await;
//! d.run_until_idle().await?;
//! let rows = d.rows(&entities_table()).await;
//! let changes = d.output("ig.changefeed.entities").await;
//! ```

use super::config::TopologyConfig;
use super::relay::Relay;
use super::worker::{RuntimeError, Worker, ensure_topic};
use crate::log::memory::MemoryLog;
use crate::log::{Log, Record, StoredRecord};
use crate::processor::Processor;
use crate::projection::TableSpec;
use crate::store::ProjectionStore;
use crate::store::memory::MemoryStore;
use std::sync::Arc;

pub struct TopologyTestDriver {
    pub log: MemoryLog,
    pub store: MemoryStore,
    worker: Worker,
    relay: Relay,
}

impl TopologyTestDriver {
    /// Creates the source topics (3 partitions each) and starts the topology.
    pub async fn new(
        mut config: TopologyConfig,
        processor: Box<dyn Processor>,
    ) -> Result<Self, RuntimeError> {
        // No lingering in tests: each step folds what is there.
        config.batch.linger_ms = 0;
        let log = MemoryLog::new();
        let store = MemoryStore::new();
        for t in &config.sources.topics {
            ensure_topic(&log, t, 3).await?;
        }
        let shared_log: Arc<dyn Log> = Arc::new(log.clone());
        let shared_store: Arc<dyn ProjectionStore> = Arc::new(store.clone());
        let (worker, relay) =
            super::topology::Topology::prepare(config, processor, shared_log, shared_store).await?;
        Ok(TopologyTestDriver {
            log,
            store,
            worker,
            relay,
        })
    }

    /// Appends a JSON event (validated; panics on an invalid one — use
    /// [`Self::pipe_raw`] to feed bad bytes) keyed and partitioned as `produce` does.
    pub async fn pipe_json(&self, topic: &str, json: &str) {
        crate::testing::pipe_json(&self.log, topic, json).await
    }

    /// Appends raw bytes (e.g. garbage, to exercise the DLQ) to partition 0.
    pub async fn pipe_raw(&self, topic: &str, value: &[u8]) {
        self.log
            .append(topic, 0, vec![Record::new(None, value.to_vec())])
            .await
            .expect("append");
    }

    /// Runs worker and relay until neither has anything left to do.
    pub async fn run_until_idle(&mut self) -> Result<(), RuntimeError> {
        loop {
            let worked = self.worker.step().await?.records;
            let relayed = self.relay.step().await?;
            if worked == 0 && relayed == 0 {
                // Lag figures, as `run` reports them every second.
                self.worker.refresh_lag().await?;
                return Ok(());
            }
        }
    }

    /// The topology's status (counts, positions), as `topology status` shows it.
    pub fn status(&self) -> super::TopologyStatus {
        self.worker.status.snapshot()
    }

    /// A projection table's rows, ordered by key.
    pub async fn rows(&self, table: &TableSpec) -> Vec<serde_json::Value> {
        self.store.dump_table(table).await.expect("dump")
    }

    /// Every record of an output topic, partition by partition.
    pub async fn output(&self, topic: &str) -> Vec<StoredRecord> {
        let mut out = Vec::new();
        let Ok(d) = self.log.describe_topic(topic).await else {
            return out;
        };
        for p in d.partitions {
            out.extend(
                self.log
                    .read(topic, p.partition, p.low_watermark, usize::MAX)
                    .await
                    .expect("read"),
            );
        }
        out
    }

    /// Output records decoded as JSON values (changefeed events).
    pub async fn output_json(&self, topic: &str) -> Vec<serde_json::Value> {
        self.output(topic)
            .await
            .iter()
            .filter_map(|r| serde_json::from_slice(&r.record.value).ok())
            .collect()
    }
}
