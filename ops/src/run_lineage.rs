//! Conductor reports its own lineage: every topology `conductor run` runs
//! is an OpenLineage job (namespace `conductor`), its source topics are its
//! inputs, its projection tables and derived topics its outputs. A run of
//! the process is a run of each job:
//!
//! - START when the topology starts;
//! - RUNNING at most every `running_every_secs`, when it has folded more
//!   since the last one, with the `conductor_progress` run facet (events
//!   folded, events per second over the interval, lag, offsets);
//! - COMPLETE when it drains, FAIL (with the `errorMessage` facet) when it
//!   halts.
//!
//! The events go to `ig.ingest.runs` (tenant `default`, like any producer
//! that names no tenant), where the `lineage` topology folds them, and to an
//! external OpenLineage endpoint when `[lineage] endpoint` is set (Marquez,
//! DataHub, another Conductor): `POST {endpoint}/api/v1/lineage`, the bearer
//! token from the variable `api_key_env` names. Reporting never stops a
//! topology: a failed append or post is logged and dropped.

use crate::cli::{LogBackend, StoreBackend};
use crate::lineage_service::RUNS_TOPIC;
use crate::settings::Settings;
use conductor_engine::envelope::{HEADER_CONTENT_TYPE, HEADER_TENANT};
use conductor_engine::log::{Log, Record, partition_for_key};
use conductor_engine::runtime::worker::ensure_topic;
use conductor_engine::runtime::{StatusHandle, TopologyConfig, TopologyState};
use conductor_engine::store::ProjectionStore;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The job namespace of Conductor's topologies.
pub const NAMESPACE: &str = "conductor";
const PRODUCER: &str = concat!(
    "https://github.com/conductor/conductor/tree/",
    env!("CARGO_PKG_VERSION")
);
const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const PROGRESS_FACET_SCHEMA: &str =
    "https://github.com/conductor/conductor/blob/main/docs/specs/lineage.md#conductor_progress";

/// `[lineage]` of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineageSettings {
    /// Report the topologies' runs (START, RUNNING, COMPLETE, FAIL).
    pub report: bool,
    /// An OpenLineage endpoint to post them to as well (`http://marquez:5000`).
    pub endpoint: Option<String>,
    /// The environment variable holding the endpoint's API key (sent as a bearer token).
    pub api_key_env: Option<String>,
    /// At most one RUNNING event per topology this often.
    pub running_every_secs: u64,
    /// The tenant the runs belong to.
    pub tenant: String,
}

impl Default for LineageSettings {
    fn default() -> Self {
        LineageSettings {
            report: true,
            endpoint: None,
            api_key_env: None,
            running_every_secs: 30,
            tenant: "default".into(),
        }
    }
}

/// The dataset namespaces of this process's log and store (OpenLineage's
/// naming: `kafka://host:port`, `postgres://host:port/db`; the embedded
/// ones by path).
pub fn namespaces(settings: &Settings) -> (String, String) {
    let data = std::path::absolute(&settings.data_dir).unwrap_or(settings.data_dir.clone());
    let log = match settings.log {
        LogBackend::File => format!("file://{}", data.join("log").display()),
        LogBackend::Kafka => format!(
            "kafka://{}",
            settings
                .kafka_bootstrap
                .as_deref()
                .unwrap_or("")
                .split(',')
                .next()
                .unwrap_or("")
        ),
    };
    let store = match settings.store {
        StoreBackend::Sqlite => format!("sqlite://{}", data.join("projections.db").display()),
        StoreBackend::Postgres => {
            postgres_namespace(settings.database_url.as_deref().unwrap_or(""))
        }
    };
    (log, store)
}

/// `postgres://host:port/db` of a URL, without credentials or parameters.
fn postgres_namespace(url: &str) -> String {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .unwrap_or(url);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.split('?').next().unwrap_or(rest);
    format!("postgres://{rest}")
}

/// What a topology reads and writes, as OpenLineage datasets.
struct JobShape {
    name: String,
    /// This process's run of the job.
    run_id: String,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
}

fn shape(config: &TopologyConfig, log_ns: &str, store_ns: &str) -> JobShape {
    let topic = |t: &str| json!({"namespace": log_ns, "name": t});
    let mut outputs: Vec<Value> = Vec::new();
    if let Some(spec) = conductor_processors::find(&config.processor)
        && let Ok(tables) = spec.tables(&config.processor_config)
    {
        outputs.extend(
            tables
                .iter()
                .map(|t| json!({"namespace": store_ns, "name": t.name})),
        );
    }
    if config.changefeed.enabled {
        outputs.push(topic(&config.changefeed_topic()));
    }
    if let Ok(p) = crate::topologies::build_processor(config) {
        if p.graph().is_some() {
            outputs.push(topic(&config.graph_topic()));
        }
        outputs.extend(p.output_topics().iter().map(|(t, _)| topic(t)));
    }
    JobShape {
        name: config.name.clone(),
        run_id: new_run_id(),
        inputs: config.sources.topics.iter().map(|t| topic(t)).collect(),
        outputs,
    }
}

/// The dataset ids (`dataset:NS:NAME`) `config` reads and writes, as its
/// runs report them.
pub fn dataset_ids(settings: &Settings, config: &TopologyConfig) -> Vec<String> {
    let (log_ns, store_ns) = namespaces(settings);
    let s = shape(config, &log_ns, &store_ns);
    let mut ids: Vec<String> = s
        .inputs
        .iter()
        .chain(&s.outputs)
        .map(|d| {
            format!(
                "dataset:{}:{}",
                d["namespace"].as_str().unwrap_or(""),
                d["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

struct Reported {
    shape: JobShape,
    status: StatusHandle,
    /// Events folded at the last report, and when.
    last: (u64, Instant),
    ended: bool,
}

/// Reports the runs of the topologies of one `conductor run`.
pub struct RunReporter {
    settings: LineageSettings,
    log: Arc<dyn Log>,
    http: Option<(reqwest::Client, String, Option<String>)>,
    /// For the catalog coverage gauge.
    coverage: Option<(Settings, Vec<TopologyConfig>, Arc<dyn ProjectionStore>)>,
    jobs: Mutex<Vec<Reported>>,
}

impl RunReporter {
    /// Reports START for each topology (appended before this returns, so a
    /// `lineage` topology in this process folds them) and starts the
    /// RUNNING/FAIL reporting; `None` when `[lineage] report = false`.
    pub async fn start(
        settings: &Settings,
        configs: &[TopologyConfig],
        statuses: &[StatusHandle],
        log: Arc<dyn Log>,
        store: Arc<dyn ProjectionStore>,
    ) -> Option<Arc<Self>> {
        let lineage = settings.lineage.clone();
        if !lineage.report {
            return None;
        }
        let (log_ns, store_ns) = namespaces(settings);
        let http = lineage.endpoint.as_ref().map(|endpoint| {
            let key = lineage
                .api_key_env
                .as_ref()
                .and_then(|v| std::env::var(v).ok());
            (
                reqwest::Client::new(),
                format!("{}/api/v1/lineage", endpoint.trim_end_matches('/')),
                key,
            )
        });
        let jobs = configs
            .iter()
            .zip(statuses)
            .map(|(c, s)| Reported {
                shape: shape(c, &log_ns, &store_ns),
                status: s.clone(),
                last: (0, Instant::now()),
                ended: false,
            })
            .collect();
        let reporter = Arc::new(RunReporter {
            settings: lineage,
            log,
            http,
            coverage: Some((settings.clone(), configs.to_vec(), store)),
            jobs: Mutex::new(jobs),
        });
        let starts: Vec<Value> = reporter
            .lock()
            .iter()
            .map(|j| reporter.event("START", &j.shape, None))
            .collect();
        reporter.send(starts).await;
        let every = Duration::from_secs(reporter.settings.running_every_secs.max(1));
        let ticking = reporter.clone();
        tokio::spawn(async move {
            let mut gauged = None::<Instant>;
            loop {
                if gauged.is_none_or(|at| at.elapsed() >= every) {
                    ticking.gauge_coverage().await;
                    gauged = Some(Instant::now());
                }
                tokio::time::sleep(every.min(Duration::from_secs(1))).await;
                ticking.tick(every).await;
            }
        });
        Some(reporter)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Reported>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets `conductor_catalog_coverage_ratio` for the topologies' datasets.
    async fn gauge_coverage(&self) {
        let Some((settings, configs, store)) = &self.coverage else {
            return;
        };
        if let Ok(c) = crate::commands::catalog::coverage(
            settings,
            store.as_ref(),
            configs,
            &self.settings.tenant,
        )
        .await
        {
            metrics::gauge!(conductor_engine::metrics::CATALOG_COVERAGE_RATIO).set(c.ratio());
        }
    }

    /// FAIL for a topology that halted; RUNNING for one that folded more
    /// since its last report, at most once per `every`.
    async fn tick(&self, every: Duration) {
        let mut events = Vec::new();
        for job in self.lock().iter_mut().filter(|j| !j.ended) {
            let status = job.status.snapshot();
            if status.state == TopologyState::Failed {
                job.ended = true;
                events.push(self.failed(&job.shape, status.error.as_deref()));
            } else if job.last.1.elapsed() >= every && status.events_processed > job.last.0 {
                let seconds = job.last.1.elapsed().as_secs_f64();
                let rate = (status.events_processed - job.last.0) as f64 / seconds;
                let facet = progress_facet(&status, rate);
                job.last = (status.events_processed, Instant::now());
                events.push(self.event("RUNNING", &job.shape, Some(facet)));
            }
        }
        self.send(events).await;
    }

    /// COMPLETE for every topology still running (FAIL for one that
    /// halted), as the process stops.
    pub async fn finish(&self) {
        let mut events = Vec::new();
        for job in self.lock().iter_mut().filter(|j| !j.ended) {
            job.ended = true;
            let status = job.status.snapshot();
            if status.state == TopologyState::Failed {
                events.push(self.failed(&job.shape, status.error.as_deref()));
            } else {
                let seconds = job.last.1.elapsed().as_secs_f64().max(1e-3);
                let rate = status.events_processed.saturating_sub(job.last.0) as f64 / seconds;
                let facet = progress_facet(&status, rate);
                events.push(self.event("COMPLETE", &job.shape, Some(facet)));
            }
        }
        self.send(events).await;
    }

    fn failed(&self, shape: &JobShape, error: Option<&str>) -> Value {
        let mut e = self.event("FAIL", shape, None);
        e["run"]["facets"]["errorMessage"] = json!({
            "_producer": PRODUCER,
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json",
            "message": error.unwrap_or("the topology halted"),
            "programmingLanguage": "rust",
        });
        e
    }

    fn event(&self, kind: &str, shape: &JobShape, progress: Option<Value>) -> Value {
        let mut e = json!({
            "eventType": kind,
            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "producer": PRODUCER,
            "schemaURL": SCHEMA_URL,
            "run": {"runId": shape.run_id, "facets": {}},
            "job": {"namespace": NAMESPACE, "name": shape.name},
            "inputs": shape.inputs,
            "outputs": shape.outputs,
        });
        if let Some(facet) = progress {
            e["run"]["facets"]["conductor_progress"] = facet;
        }
        e
    }

    /// Appends to `ig.ingest.runs` and posts to the endpoint; failures are
    /// logged, never raised.
    async fn send(&self, events: Vec<Value>) {
        if events.is_empty() {
            return;
        }
        if let Err(error) = self.append(&events).await {
            tracing::warn!(error = %error, "could not report the topologies' runs to {RUNS_TOPIC}");
        }
        if let Some((client, url, key)) = &self.http {
            for e in &events {
                let mut request = client.post(url).json(e);
                if let Some(key) = key {
                    request = request.bearer_auth(key);
                }
                match request.timeout(Duration::from_secs(5)).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        tracing::warn!(status = %r.status(), url = %url, "the lineage endpoint refused a run event")
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, url = %url, "could not post a run event to the lineage endpoint")
                    }
                }
            }
        }
    }

    async fn append(&self, events: &[Value]) -> Result<(), conductor_engine::log::LogError> {
        ensure_topic(self.log.as_ref(), RUNS_TOPIC, 3).await?;
        let partitions = self.log.describe_topic(RUNS_TOPIC).await?.partitions.len() as i32;
        let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for e in events {
            let key = format!(
                "run:{NAMESPACE}/{}",
                e["job"]["name"].as_str().unwrap_or("")
            );
            let partition = partition_for_key(key.as_bytes(), partitions);
            by_partition.entry(partition).or_default().push(
                Record::new(Some(key.into_bytes()), e.to_string().into_bytes())
                    .with_header(HEADER_TENANT, self.settings.tenant.as_bytes())
                    .with_header(HEADER_CONTENT_TYPE, b"application/json"),
            );
        }
        for (partition, records) in by_partition {
            self.log.append(RUNS_TOPIC, partition, records).await?;
        }
        Ok(())
    }
}

/// Reports the end of every run and, when a `lineage` topology runs in this
/// process, gives it up to ten seconds to fold those events before the
/// process stops.
pub async fn report_end(reporter: Option<&Arc<RunReporter>>, running: &crate::topologies::Running) {
    let Some(reporter) = reporter else { return };
    reporter.finish().await;
    let folds_lineage = running
        .statuses
        .iter()
        .any(|s| s.snapshot().processor == "lineage");
    if folds_lineage {
        let _ = tokio::time::timeout(Duration::from_secs(10), running.caught_up()).await;
    }
}

/// `conductor_progress`: what a topology folded, how fast, how far behind.
fn progress_facet(status: &conductor_engine::runtime::TopologyStatus, rate: f64) -> Value {
    let offsets: Vec<Value> = status
        .partitions
        .iter()
        .map(|p| json!({"topic": p.topic, "partition": p.partition, "nextOffset": p.next_offset, "lag": p.lag}))
        .collect();
    json!({
        "_producer": PRODUCER,
        "_schemaURL": PROGRESS_FACET_SCHEMA,
        "eventsProcessed": status.events_processed,
        "eventsPerSecond": (rate * 10.0).round() / 10.0,
        "lag": status.partitions.iter().map(|p| p.lag.max(0)).sum::<i64>(),
        "dlqEvents": status.dlq_events,
        "offsets": offsets,
    })
}

/// A random UUID (version 4 layout).
fn new_run_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b
        .iter()
        .enumerate()
        .map(|(i, byte)| match i {
            6 => format!("{:02x}", (byte & 0x0f) | 0x40),
            8 => format!("{:02x}", (byte & 0x3f) | 0x80),
            _ => format!("{byte:02x}"),
        })
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_uuids_and_differ() {
        let (a, b) = (new_run_id(), new_run_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn postgres_namespaces_drop_credentials_and_parameters() {
        assert_eq!(
            postgres_namespace("postgres://me:secret@db.example:5432/ig?sslmode=require"),
            "postgres://db.example:5432/ig"
        );
    }
}
