//! Serving a topic from a cursor: catch-up from the subscriber's own
//! position, then a shared live tail routed by tenant.
//!
//! One tail task per partition of a topic reads new records once, finds each
//! record's tenant (its `ig-tenant` header, else the value's `tenant`) and
//! broadcasts it on that tenant's channel only (a bounded
//! `tokio::sync::broadcast`: the tail never waits for anyone). A record thus
//! wakes only the subscribers that may see it — the cost of a record does not
//! grow with every subscriber of the topic — and one tenant's burst can only
//! make its own subscribers fall behind.
//!
//! A [`Subscription`] is driven by offsets, not by the channel: it keeps the
//! next offset it owes per partition. Each live record carries `prev`, the
//! offset of the tail's previous record of the same tenant on that
//! partition (or a floor below which the tail knows nothing). A live record
//! at or past the owed offset whose `prev` lies below it is exactly the next
//! record this subscriber may see — nothing of its tenant lies between — and
//! is delivered; one below the owed offset is a duplicate and skipped; one
//! whose `prev` is at or past the owed offset means a record of the tenant
//! was missed (the subscriber joined while the tail was ahead of it), and
//! that partition reads the log from its own position until it reaches the
//! end again (catch-up). A subscriber too slow for its channel (it lagged)
//! falls back to catch-up on every partition — it costs it a log read, and
//! costs the others nothing. So per-partition (hence per-key) order holds,
//! and nothing is lost or repeated whatever the timing.

use super::event::EventJson;
use super::filter::Filter;
use super::metrics as m;
use conductor_engine::cursor::{Cursor, CursorError, CursorKey, check_against_log};
use conductor_engine::envelope::record_tenant;
use conductor_engine::log::{Log, LogError, StoredRecord};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// Records of its tenant a live subscriber may fall behind the tail before
/// it is moved to catch-up. Each tenant channel allocates this many slots.
const LIVE_BUFFER: usize = 1024;
/// Tenants whose last offset a partition's tail remembers; past this it
/// forgets them all and raises its floor (costing some subscribers a
/// catch-up read, never an event).
const TRACKED_TENANTS: usize = 100_000;
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
    /// Shared with every other subscriber that got the same record live.
    pub event: EventJson,
    pub partition: i32,
    pub offset: i64,
    /// When the record was appended (ms), for fan-out latency.
    pub append_ms: i64,
    /// Delivered from the live tail (else from a catch-up read).
    pub live: bool,
}

/// A live record and the offset of the previous record of its tenant on
/// its partition that the tail saw (see the module doc).
struct LiveRecord {
    record: StoredRecord,
    prev: i64,
    /// `None`: not an event anyone can be sent (the subscriber skips it).
    event: Option<EventJson>,
}

/// tenant → its live channel, shared by a topic's tail tasks and subscribers.
type Channels = Arc<Mutex<HashMap<String, broadcast::Sender<Arc<LiveRecord>>>>>;

/// The live tail of one topic: one task per partition, one channel per
/// tenant with subscribers.
struct TopicTail {
    channels: Channels,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TopicTail {
    /// A receiver of `tenant`'s live records (its channel made if needed).
    fn receiver(&self, tenant: &str) -> broadcast::Receiver<Arc<LiveRecord>> {
        let mut channels = lock(&self.channels);
        if let Some(tx) = channels.get(tenant) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(LIVE_BUFFER);
        channels.insert(tenant.to_string(), tx);
        TENANT_CHANNELS.fetch_add(1, Ordering::Relaxed);
        rx
    }
}

/// Tenant channels open in this process (for tests and diagnostics).
static TENANT_CHANNELS: AtomicUsize = AtomicUsize::new(0);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for TopicTail {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let n = lock(&self.channels).drain().count();
        TENANT_CHANNELS.fetch_sub(n, Ordering::Relaxed);
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
        let channels = Channels::default();
        let tasks = description
            .partitions
            .iter()
            .map(|p| {
                tokio::spawn(tail_partition(
                    self.log.clone(),
                    topic.to_string(),
                    p.partition,
                    p.high_watermark,
                    channels.clone(),
                ))
            })
            .collect();
        let tail = Arc::new(TopicTail { channels, tasks });
        tails.insert(topic.to_string(), Arc::downgrade(&tail));
        Ok(tail)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<TopicTail>>> {
        lock(&self.tails)
    }

    /// Tenant channels open now, over every topic of every hub.
    pub fn tenant_channels() -> usize {
        TENANT_CHANNELS.load(Ordering::Relaxed)
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
        let rx = tail.receiver(&request.tenant);
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
            metrics: DeliveryMetrics::new(),
        })
    }
}

/// Reads one partition from `start` on and routes each record to its
/// tenant's channel, if anyone listens there.
async fn tail_partition(
    log: Arc<dyn Log>,
    topic: String,
    partition: i32,
    start: i64,
    channels: Channels,
) {
    let mut next = start;
    // tenant → offset of its last record here; below `floor` nothing is known.
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut floor = start;
    loop {
        match log.read(&topic, partition, next, READ_CHUNK).await {
            Ok(records) if records.is_empty() => tokio::time::sleep(TAIL_POLL).await,
            Ok(records) => {
                next = records.last().map_or(next, |r| r.offset + 1);
                let mut channels = lock(&channels);
                for r in records {
                    // The header names the tenant without parsing the value;
                    // else the value is parsed here, once.
                    let mut event = None;
                    let tenant = match record_tenant(&r.record) {
                        Some(t) => t.to_string(),
                        None => {
                            event = EventJson::of(&r.record);
                            match event.as_ref().and_then(EventJson::tenant) {
                                Some(t) => t.to_string(),
                                None => continue, // no tenant: no subscriber may see it
                            }
                        }
                    };
                    if last.len() >= TRACKED_TENANTS && !last.contains_key(&tenant) {
                        last.clear();
                        floor = r.offset;
                    }
                    let prev = last.insert(tenant.clone(), r.offset).unwrap_or(floor - 1);
                    let Some(tx) = channels.get(&tenant) else {
                        continue;
                    };
                    let event = event.or_else(|| EventJson::of(&r.record));
                    if tx
                        .send(Arc::new(LiveRecord {
                            record: r,
                            prev,
                            event,
                        }))
                        .is_err()
                    {
                        // Its last subscriber left: close the channel.
                        channels.remove(&tenant);
                        TENANT_CHANNELS.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
            Err(LogError::OffsetOutOfRange { low, .. }) => {
                next = low;
                last.clear();
                floor = low;
            }
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
    /// The live records of this subscriber's tenant.
    rx: broadcast::Receiver<Arc<LiveRecord>>,
    /// partition → next offset owed to the subscriber.
    next: BTreeMap<i32, i64>,
    /// Partitions reading from the log, in turn.
    catching_up: VecDeque<i32>,
    topic: String,
    tenant: String,
    filter: Filter,
    pending: VecDeque<Delivery>,
    metrics: DeliveryMetrics,
}

/// A subscription's metric handles, looked up once rather than per event.
struct DeliveryMetrics {
    live_latency: metrics::Histogram,
    catchup_latency: metrics::Histogram,
    live: metrics::Counter,
    catchup: metrics::Counter,
}

impl DeliveryMetrics {
    fn new() -> Self {
        DeliveryMetrics {
            live_latency: metrics::histogram!(m::FANOUT_LATENCY_SECONDS, "mode" => "live"),
            catchup_latency: metrics::histogram!(m::FANOUT_LATENCY_SECONDS, "mode" => "catchup"),
            live: metrics::counter!(m::DELIVERED_TOTAL, "mode" => "live"),
            catchup: metrics::counter!(m::DELIVERED_TOTAL, "mode" => "catchup"),
        }
    }
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

    /// Waits for the next event this subscriber may see. Cancel-safe: a
    /// dropped call loses nothing, the next call goes on from the same place.
    pub async fn next(&mut self) -> Result<Delivery, SubscribeError> {
        loop {
            if let Some(d) = self.pending.pop_front() {
                let latency =
                    (conductor_engine::log::now_ms() - d.append_ms).max(0) as f64 / 1000.0;
                let m = &self.metrics;
                let (histogram, counter) = if d.live {
                    (&m.live_latency, &m.live)
                } else {
                    (&m.catchup_latency, &m.catchup)
                };
                histogram.record(latency);
                counter.increment(1);
                return Ok(d);
            }
            if let Some(&p) = self.catching_up.front() {
                // Popped only once the read is done: dropping this future
                // mid-read (a transport's select!) must not forget the partition.
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
                self.catching_up.pop_front();
                if !records.is_empty() {
                    // Still behind: read this partition again after the others.
                    self.catching_up.push_back(p);
                }
                for r in &records {
                    self.accept_read(r);
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(live) => {
                    let r = &live.record;
                    let owed = self.next.get(&r.partition).copied().unwrap_or(0);
                    if r.offset < owed {
                        continue; // already delivered (or read past) by catch-up
                    }
                    if live.prev < owed {
                        self.accept_live(r, live.event.as_ref());
                    } else if !self.catching_up.contains(&r.partition) {
                        // A record of this tenant in [owed, prev] was not
                        // seen here: read the log from `owed`.
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

    /// Advances past a record read from the log and queues it when this
    /// subscriber may see it.
    fn accept_read(&mut self, r: &StoredRecord) {
        self.next.insert(r.partition, r.offset + 1);
        // The tenant header decides without parsing the value.
        let header = record_tenant(&r.record);
        if header.is_some_and(|t| t != self.tenant) {
            return;
        }
        let Some(event) = EventJson::of(&r.record) else {
            return;
        };
        if header.or_else(|| event.tenant()) != Some(self.tenant.as_str()) {
            return;
        }
        self.queue(r, event, false);
    }

    /// Advances past a live record of this subscriber's tenant (the tail
    /// routed it here by tenant) and queues its event.
    fn accept_live(&mut self, r: &StoredRecord, event: Option<&EventJson>) {
        self.next.insert(r.partition, r.offset + 1);
        if let Some(event) = event {
            self.queue(r, event.clone(), true);
        }
    }

    fn queue(&mut self, r: &StoredRecord, event: EventJson, live: bool) {
        if !self.filter.is_empty() && !self.filter.matches(event.value()) {
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
