//! Serving a topic from a cursor: catch-up from the subscriber's own
//! position, then a shared live tail.
//!
//! One tail task per partition of a topic reads new records once and
//! broadcasts them to every live subscriber of the topic (a bounded
//! `tokio::sync::broadcast` channel: the tail never waits for anyone).
//!
//! A [`Subscription`] is driven by offsets, not by the channel: it keeps the
//! next offset it owes per partition and only ever delivers exactly that one.
//! A live record at that offset is delivered from the channel; an older one
//! is a duplicate and skipped; a newer one means a gap, and that partition
//! reads the log from its own position until it reaches the end again
//! (catch-up). A subscriber too slow for the channel (it lagged) falls back
//! to catch-up on every partition — it costs it a log read, and costs the
//! others nothing. So per-partition (hence per-key) order holds, and nothing
//! is lost or repeated whatever the timing.

use super::filter::Filter;
use super::metrics as m;
use conductor_engine::cursor::{Cursor, CursorError, CursorKey, check_against_log};
use conductor_engine::envelope::{decode_event, record_tenant};
use conductor_engine::log::{Log, LogError, StoredRecord};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// Records a live subscriber may fall behind the tail before it is moved
/// to catch-up.
const LIVE_BUFFER: usize = 4096;
/// Records per log read (tail and catch-up).
const READ_CHUNK: usize = 500;
/// How often an idle tail looks for new records.
const TAIL_POLL: Duration = Duration::from_millis(5);

/// Why a subscription could not start or go on. Messages are safe to show.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error(transparent)]
    Cursor(#[from] CursorError),
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    #[error("the log is unavailable: {0}")]
    Log(String),
}

impl From<LogError> for SubscribeError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::UnknownTopic(t) => SubscribeError::UnknownTopic(t),
            other => SubscribeError::Log(other.to_string()),
        }
    }
}

/// Where a subscription without a cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    Earliest,
    #[default]
    Latest,
}

#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub topic: String,
    /// From the verified token, never from the client's say-so.
    pub tenant: String,
    pub cursor: Option<String>,
    pub start: StartAt,
    pub filter: Filter,
}

/// One delivered event and the cursor that resumes right after it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub cursor: String,
    pub event: Value,
    pub partition: i32,
    pub offset: i64,
    /// When the record was appended (ms), for fan-out latency.
    pub append_ms: i64,
    /// Delivered from the live tail (else from a catch-up read).
    pub live: bool,
}

/// The live tail of one topic: one task per partition, one channel.
struct TopicTail {
    tx: broadcast::Sender<Arc<StoredRecord>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TopicTail {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Serves subscriptions of any topic of one log.
pub struct Hub {
    log: Arc<dyn Log>,
    key: Arc<CursorKey>,
    /// Tails live while a subscription holds them.
    tails: Mutex<HashMap<String, Weak<TopicTail>>>,
}

impl Hub {
    pub fn new(log: Arc<dyn Log>, key: Arc<CursorKey>) -> Arc<Hub> {
        Arc::new(Hub {
            log,
            key,
            tails: Mutex::new(HashMap::new()),
        })
    }

    pub fn cursor_key(&self) -> &CursorKey {
        &self.key
    }

    /// The topic's tail, started at the current end of each partition if
    /// no subscription holds one yet.
    async fn tail(&self, topic: &str) -> Result<Arc<TopicTail>, SubscribeError> {
        if let Some(t) = self.lock().get(topic).and_then(Weak::upgrade) {
            return Ok(t);
        }
        let description = self.log.describe_topic(topic).await?;
        let mut tails = self.lock();
        if let Some(t) = tails.get(topic).and_then(Weak::upgrade) {
            return Ok(t);
        }
        let (tx, _) = broadcast::channel(LIVE_BUFFER);
        let tasks = description
            .partitions
            .iter()
            .map(|p| {
                tokio::spawn(tail_partition(
                    self.log.clone(),
                    topic.to_string(),
                    p.partition,
                    p.high_watermark,
                    tx.clone(),
                ))
            })
            .collect();
        let tail = Arc::new(TopicTail { tx, tasks });
        tails.insert(topic.to_string(), Arc::downgrade(&tail));
        Ok(tail)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<TopicTail>>> {
        self.tails.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a subscription: checks the cursor (signature, tenant, topic,
    /// retention) and positions it; events flow from [`Subscription::next`].
    pub async fn subscribe(
        self: &Arc<Self>,
        request: SubscribeRequest,
    ) -> Result<Subscription, SubscribeError> {
        let description = self.log.describe_topic(&request.topic).await?;
        let mut next: BTreeMap<i32, i64> = description
            .partitions
            .iter()
            .map(|p| {
                let start = match request.start {
                    StartAt::Earliest => p.low_watermark,
                    StartAt::Latest => p.high_watermark,
                };
                (p.partition, start)
            })
            .collect();
        if let Some(token) = &request.cursor {
            let cursor = self.key.decode(token, &request.tenant)?;
            if cursor.topic != request.topic {
                return Err(CursorError::WrongTopic {
                    expected: request.topic.clone(),
                    actual: cursor.topic,
                }
                .into());
            }
            check_against_log(self.log.as_ref(), &cursor).await??;
            for (p, o) in &cursor.positions {
                next.insert(*p, *o);
            }
            // Partitions the cursor does not know (added later) start at their beginning.
            for p in &description.partitions {
                if !cursor.positions.contains_key(&p.partition) {
                    next.insert(p.partition, p.low_watermark);
                }
            }
        }
        // Subscribe to the live channel BEFORE reading anything, so that
        // every record appended from now on is either in the channel or
        // found by catch-up.
        let tail = self.tail(&request.topic).await?;
        let rx = tail.tx.subscribe();
        metrics::gauge!(m::SUBSCRIPTIONS_ACTIVE).increment(1.0);
        Ok(Subscription {
            log: self.log.clone(),
            key: self.key.clone(),
            _tail: tail,
            rx,
            catching_up: next.keys().copied().collect(),
            next,
            topic: request.topic,
            tenant: request.tenant,
            filter: request.filter,
            pending: VecDeque::new(),
        })
    }
}

async fn tail_partition(
    log: Arc<dyn Log>,
    topic: String,
    partition: i32,
    mut next: i64,
    tx: broadcast::Sender<Arc<StoredRecord>>,
) {
    loop {
        match log.read(&topic, partition, next, READ_CHUNK).await {
            Ok(records) if records.is_empty() => tokio::time::sleep(TAIL_POLL).await,
            Ok(records) => {
                for r in records {
                    next = r.offset + 1;
                    // No receiver is fine: nobody is live right now.
                    let _ = tx.send(Arc::new(r));
                }
            }
            Err(LogError::OffsetOutOfRange { low, .. }) => next = low,
            Err(e) => {
                tracing::warn!(topic = %topic, partition, error = %e, "tail read failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// One subscriber's position in a topic (see the module doc).
pub struct Subscription {
    log: Arc<dyn Log>,
    key: Arc<CursorKey>,
    _tail: Arc<TopicTail>,
    rx: broadcast::Receiver<Arc<StoredRecord>>,
    /// partition → next offset owed to the subscriber.
    next: BTreeMap<i32, i64>,
    /// Partitions reading from the log, in turn.
    catching_up: VecDeque<i32>,
    topic: String,
    tenant: String,
    filter: Filter,
    pending: VecDeque<Delivery>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        metrics::gauge!(m::SUBSCRIPTIONS_ACTIVE).decrement(1.0);
    }
}

impl Subscription {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The cursor of the current position (before any event is delivered).
    pub fn cursor(&self) -> String {
        self.key.encode(&Cursor {
            tenant: self.tenant.clone(),
            topic: self.topic.clone(),
            positions: self.next.clone(),
        })
    }

    /// Waits for the next event this subscriber may see.
    pub async fn next(&mut self) -> Result<Delivery, SubscribeError> {
        loop {
            if let Some(d) = self.pending.pop_front() {
                let mode = if d.live { "live" } else { "catchup" };
                let latency =
                    (conductor_engine::log::now_ms() - d.append_ms).max(0) as f64 / 1000.0;
                metrics::histogram!(m::FANOUT_LATENCY_SECONDS, "mode" => mode).record(latency);
                metrics::counter!(m::DELIVERED_TOTAL, "mode" => mode).increment(1);
                return Ok(d);
            }
            if let Some(p) = self.catching_up.pop_front() {
                let from = self.next[&p];
                let records = match self.log.read(&self.topic, p, from, READ_CHUNK).await {
                    Ok(r) => r,
                    Err(LogError::OffsetOutOfRange { low, .. }) => {
                        return Err(CursorError::Expired {
                            topic: self.topic.clone(),
                            partition: p,
                            offset: from,
                            earliest: low,
                        }
                        .into());
                    }
                    Err(e) => return Err(e.into()),
                };
                if !records.is_empty() {
                    // Still behind: read this partition again after the others.
                    self.catching_up.push_back(p);
                }
                for r in &records {
                    self.accept(r, false);
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(r) => {
                    let owed = self.next.get(&r.partition).copied().unwrap_or(0);
                    if r.offset == owed {
                        self.accept(&r, true);
                    } else if r.offset > owed {
                        // A gap (records from before the channel caught us): read them.
                        self.catching_up.push_back(r.partition);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    metrics::counter!(m::FELL_BACK_TO_CATCHUP_TOTAL).increment(1);
                    self.catching_up = self.next.keys().copied().collect();
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(SubscribeError::Log("the topic's tail stopped".into()));
                }
            }
        }
    }

    /// Advances past `r` and queues it when this subscriber may see it.
    fn accept(&mut self, r: &StoredRecord, live: bool) {
        self.next.insert(r.partition, r.offset + 1);
        // The tenant header decides without parsing the value: every live
        // subscriber sees every record, most of them other tenants'.
        let header = record_tenant(&r.record);
        if header.is_some_and(|t| t != self.tenant) {
            return;
        }
        let Some(event) = event_json(r) else { return };
        let tenant = header.or_else(|| event.get("tenant").and_then(Value::as_str));
        if tenant != Some(self.tenant.as_str()) || !self.filter.matches(&event) {
            return;
        }
        self.pending.push_back(Delivery {
            cursor: self.cursor(),
            event,
            partition: r.partition,
            offset: r.offset,
            append_ms: r.record.timestamp_ms,
            live,
        });
    }
}

/// A record's value as the JSON a subscriber gets: JSON values as they are
/// (change events, JSON-encoded events), other events decoded through the
/// schemas (Avro). Anything else is not deliverable.
fn event_json(r: &StoredRecord) -> Option<Value> {
    match serde_json::from_slice::<Value>(&r.record.value) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => decode_event(&r.record)
            .ok()
            .and_then(|e| serde_json::to_value(e).ok()),
    }
}
