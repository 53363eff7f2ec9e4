//! `POST /api/v1/lineage`: OpenLineage events over HTTP, on the path the
//! official clients post to by default (`openlineage-python`'s
//! `HttpTransport`: `url + /api/v1/lineage`), so a Marquez URL can be
//! swapped for Conductor's.
//!
//! - Bearer token with the scope `lineage.write`; the event belongs to the
//!   token's tenant (401 without a valid token, 403 without the scope).
//! - The body is checked against the OpenLineage 2-0-2 schema
//!   (`conductor_schemas::openlineage`): a bad event is answered 400 with the
//!   field at fault, and nothing is appended.
//! - An accepted event is appended to `ig.ingest.runs` as sent (plain
//!   OpenLineage JSON, keyed `run:NS/JOB` like the Kafka transport, the
//!   tenant in the `ig-tenant` header) and answered 201 only once the append
//!   returned, i.e. is durable on the log.
//!
//! `GET /api/v1/lineage?nodeId=dataset:NS:NAME&depth=N[&direction=…]`:
//! the lineage graph in Marquez's shape, for the token's tenant (scope
//! `lineage.read`), from an in-memory copy of the lineage topology's graph
//! that follows its `ig.graph.lineage` topic.

use crate::search_service::Refusal;
use conductor_engine::envelope::{HEADER_CONTENT_TYPE, HEADER_TENANT};
use conductor_engine::graph::{GraphMutation, graph_topic};
use conductor_engine::log::LogError;
use conductor_engine::log::{Log, Record, partition_for_key};
use conductor_engine::runtime::worker::ensure_topic;
use conductor_processors::lineage::query::{Direction, LineageGraph, QueryError};
use conductor_replay::subscribe::auth::{AuthError, Authenticator, bearer};
use conductor_schemas::codec::{CONTENT_TYPE_JSON, MAX_EVENT_BYTES};
use conductor_schemas::openlineage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The scope posting lineage needs.
pub const SCOPE_LINEAGE_WRITE: &str = "lineage.write";
/// The scope reading lineage needs.
pub const SCOPE_LINEAGE_READ: &str = "lineage.read";
/// The topology whose graph the queries read.
pub const LINEAGE_TOPOLOGY: &str = "lineage";
/// Deepest walk a query may ask for.
const MAX_DEPTH: usize = 100;
/// Where lineage events go: the `lineage` topology's source.
pub const RUNS_TOPIC: &str = "ig.ingest.runs";
/// Partitions of `ig.ingest.runs` when the first event creates it.
const RUNS_PARTITIONS: i32 = 3;

/// What the endpoints append with and answer from.
pub struct LineageService {
    pub log: Arc<dyn Log>,
    pub auth: Authenticator,
    /// The lineage topology's graph, kept current by [`follow`].
    pub graph: Arc<RwLock<LineageGraph>>,
    /// `POST` is answered (on `run`, which writes the log).
    pub accepts_events: bool,
}

/// `GET /api/v1/lineage`'s query string (Marquez's names).
#[derive(Debug, Default, Deserialize)]
pub struct LineageParams {
    #[serde(rename = "nodeId")]
    pub node_id: Option<String>,
    pub depth: Option<usize>,
    pub direction: Option<String>,
}

/// The answer to an accepted event.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub accepted: u32,
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

fn refusal(status: u16, error: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error: error.into(),
    }
}

fn auth_refusal(e: AuthError) -> Refusal {
    refusal(
        match e {
            AuthError::MissingScope(_) => 403,
            AuthError::NotConfigured => 503,
            _ => 401,
        },
        e.to_string(),
    )
}

impl LineageService {
    /// The service over `log`; its graph follows `ig.graph.lineage` from
    /// the start of the topic.
    pub fn start(log: Arc<dyn Log>, secret: Option<&str>, accepts_events: bool) -> Arc<Self> {
        let graph = Arc::new(RwLock::new(LineageGraph::default()));
        follow(graph.clone(), log.clone(), graph_topic(LINEAGE_TOPOLOGY));
        Arc::new(LineageService {
            log,
            auth: Authenticator::new(secret.map(str::as_bytes)),
            graph,
            accepts_events,
        })
    }

    /// Answers `GET /api/v1/lineage`.
    pub fn lineage(
        &self,
        authorization: Option<&str>,
        params: LineageParams,
    ) -> Result<serde_json::Value, Refusal> {
        let principal = self
            .auth
            .verify(bearer(authorization), SCOPE_LINEAGE_READ)
            .map_err(auth_refusal)?;
        let node = params
            .node_id
            .ok_or_else(|| refusal(400, "nodeId: missing (e.g. nodeId=dataset:NAMESPACE:NAME)"))?;
        let depth = params.depth.unwrap_or(20);
        if depth > MAX_DEPTH {
            return Err(refusal(
                400,
                format!("depth: at most {MAX_DEPTH}, got {depth}"),
            ));
        }
        let direction: Direction = params
            .direction
            .as_deref()
            .unwrap_or("both")
            .parse()
            .map_err(|e: String| refusal(400, format!("direction: {e}")))?;
        let graph = self.graph.read().unwrap_or_else(|e| e.into_inner());
        match graph.lineage(&principal.tenant, &node, depth, direction) {
            Ok(lineage) => Ok(serde_json::to_value(lineage).unwrap_or_default()),
            Err(e @ QueryError::BadNodeId(_)) => Err(refusal(400, format!("nodeId: {e}"))),
            Err(e @ QueryError::NotFound { .. }) => Err(refusal(404, e.to_string())),
        }
    }

    /// Checks and appends one event posted with the `Authorization` header's value.
    pub async fn accept(
        &self,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<Accepted, Refusal> {
        if !self.accepts_events {
            return Err(refusal(
                405,
                "lineage events are posted to `conductor run`, which writes the log",
            ));
        }
        let principal = self
            .auth
            .verify(bearer(authorization), SCOPE_LINEAGE_WRITE)
            .map_err(auth_refusal)?;
        if body.len() > MAX_EVENT_BYTES {
            return Err(Refusal {
                status: 413,
                error: format!(
                    "the event is {} bytes; at most {MAX_EVENT_BYTES} are accepted",
                    body.len()
                ),
            });
        }
        let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| Refusal {
            status: 400,
            error: format!("invalid JSON: {e}"),
        })?;
        let event = openlineage::to_event(&json, &principal.tenant).map_err(|e| Refusal {
            status: 400,
            error: e.to_string(),
        })?;
        let key = event.meta.subject.clone();
        let refused = |e: conductor_engine::log::LogError| Refusal {
            status: 503,
            error: format!("the event could not be appended to {RUNS_TOPIC}: {e}"),
        };
        ensure_topic(self.log.as_ref(), RUNS_TOPIC, RUNS_PARTITIONS)
            .await
            .map_err(refused)?;
        let partitions = self
            .log
            .describe_topic(RUNS_TOPIC)
            .await
            .map_err(refused)?
            .partitions
            .len() as i32;
        let partition = partition_for_key(key.as_bytes(), partitions);
        let record = Record::new(Some(key.into_bytes()), body.to_vec())
            .with_header(HEADER_TENANT, principal.tenant.as_bytes())
            .with_header(HEADER_CONTENT_TYPE, CONTENT_TYPE_JSON.as_bytes());
        let offsets = self
            .log
            .append(RUNS_TOPIC, partition, vec![record])
            .await
            .map_err(refused)?;
        Ok(Accepted {
            accepted: 1,
            event_id: event.meta.event_id,
            topic: RUNS_TOPIC.into(),
            partition,
            offset: offsets.first,
        })
    }
}

/// Applies what `topic` holds past `positions` to `graph`; the records read.
pub async fn read_graph(
    log: &dyn Log,
    topic: &str,
    positions: &mut BTreeMap<i32, i64>,
    graph: &RwLock<LineageGraph>,
) -> Result<usize, LogError> {
    let description = match log.describe_topic(topic).await {
        Ok(d) => d,
        Err(LogError::UnknownTopic(_)) => return Ok(0), // nothing folded yet
        Err(e) => return Err(e),
    };
    let mut read = 0;
    for p in description.partitions {
        let at = positions.entry(p.partition).or_insert(p.low_watermark);
        loop {
            let records = log.read(topic, p.partition, *at, 5000).await?;
            let Some(last) = records.last() else { break };
            *at = last.offset + 1;
            read += records.len();
            let mut g = graph.write().unwrap_or_else(|e| e.into_inner());
            for r in &records {
                // The runtime writes every record; one it can't read is skipped.
                if let Ok(m) = serde_json::from_slice::<GraphMutation>(&r.record.value) {
                    g.apply(&m);
                }
            }
        }
    }
    Ok(read)
}

/// Keeps `graph` current with `topic`, every quarter second.
pub fn follow(graph: Arc<RwLock<LineageGraph>>, log: Arc<dyn Log>, topic: String) {
    tokio::spawn(async move {
        let mut positions = BTreeMap::new();
        loop {
            match read_graph(log.as_ref(), &topic, &mut positions, &graph).await {
                Ok(0) => tokio::time::sleep(Duration::from_millis(250)).await,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(topic = %topic, error = %error, "lineage graph follower could not read");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

impl conductor_replay::server::graphql::LineageQuery for LineageService {
    fn lineage(&self, tenant: &str, node: &str, depth: usize) -> Result<serde_json::Value, String> {
        let graph = self.graph.read().unwrap_or_else(|e| e.into_inner());
        graph
            .lineage(tenant, node, depth, Direction::Both)
            .map(|l| serde_json::to_value(l).unwrap_or_default())
            .map_err(|e| e.to_string())
    }
}
