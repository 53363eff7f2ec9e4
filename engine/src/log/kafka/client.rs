//! librdkafka plumbing shared by [`super::KafkaLog`] and its writers: client
//! construction, error mapping, the reader pool, batched produce, group offsets.
//!
//! librdkafka's synchronous calls (metadata, watermarks, polls, offset commits)
//! block a thread for up to a broker round trip, so they run on tokio's
//! blocking pool, never on an async worker.

use super::KafkaConfig;
use crate::log::{Header, LogError, Record, StoredRecord};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Consumers kept for reads; more are created under load and dropped after.
const READER_POOL_SIZE: usize = 4;

/// Forwards librdkafka's log lines and client errors to `tracing`.
#[derive(Clone, Copy, Default)]
pub(crate) struct TracingContext;

impl rdkafka::ClientContext for TracingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            // A failed connection (facility FAIL) fails the operation that
            // needed it, which says so once, with a hint.
            L::Error if facility == "FAIL" => {
                tracing::debug!(target: "librdkafka", facility, "{message}")
            }
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", facility, "{message}"),
            L::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Not errors of ours: the end of a partition is news, and a broker
        // that can't be reached fails the operation that needed it, which
        // reports it once with a hint (librdkafka repeats it many times).
        let quiet = matches!(error, KafkaError::PartitionEOF(_))
            || matches!(
                error.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::AllBrokersDown
                        | RDKafkaErrorCode::BrokerTransportFailure
                        | RDKafkaErrorCode::Resolve
                )
            );
        if quiet {
            tracing::debug!(target: "librdkafka", error = %error, "{reason}");
        } else {
            tracing::warn!(target: "librdkafka", error = %error, "{reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for TracingContext {}

/// A consumer of the reader pool or a group client.
pub(crate) type Reader = BaseConsumer<TracingContext>;
/// Every producer; its librdkafka logs and errors go through `tracing`.
pub(crate) type Producer = FutureProducer<TracingContext>;

/// Every client of one [`super::KafkaLog`].
pub(crate) struct Clients {
    pub config: KafkaConfig,
    pub admin: AdminClient<TracingContext>,
    /// Idempotent (`enable.idempotence=true`, `acks=all`) producer for appends,
    /// progress records and progress-mode outputs.
    pub producer: Producer,
    /// Serializes enqueueing so that one batch's records stay contiguous.
    produce_lock: Mutex<()>,
    readers: Mutex<Vec<Reader>>,
    /// Consumers kept assigned to one partition each, for `Log::read`.
    pub partition_readers: super::partition_reader::PartitionReaders,
    groups: Mutex<HashMap<String, Arc<Reader>>>,
    /// topic → partition count, filled from metadata.
    partitions: Mutex<HashMap<String, i32>>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `LogError::Kafka` for `operation` with a readable detail.
pub(crate) fn kafka_error(operation: impl Into<String>, error: &KafkaError) -> LogError {
    let mut detail = error.to_string();
    if let Some(code) = error.rdkafka_error_code() {
        let hint = match code {
            RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::RequestTimedOut => Some("is the broker running and reachable?"),
            RDKafkaErrorCode::UnsupportedVersion | RDKafkaErrorCode::InvalidRequest => {
                Some("the broker does not support this request")
            }
            _ => None,
        };
        if let Some(hint) = hint {
            detail = format!("{detail} (hint: {hint})");
        }
    }
    LogError::Kafka {
        operation: operation.into(),
        detail,
        retryable: !error.rdkafka_error_code().is_some_and(is_permanent),
        source: Some(std::sync::Arc::new(error.clone())),
    }
}

/// Broker answers that a retry of the same request can't change.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::InvalidReplicationFactor
            | RDKafkaErrorCode::PolicyViolation
    )
}

/// `LogError::Kafka` from a plain message.
pub(crate) fn kafka_detail(operation: impl Into<String>, detail: impl Into<String>) -> LogError {
    LogError::Kafka {
        operation: operation.into(),
        detail: detail.into(),
        retryable: true,
        source: None,
    }
}

/// Runs a blocking librdkafka call on the blocking pool.
pub(crate) async fn blocking<T, F>(operation: &str, f: F) -> Result<T, LogError>
where
    F: FnOnce() -> Result<T, LogError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(kafka_detail(operation, format!("worker task failed: {e}"))),
    }
}

fn base_config(config: &KafkaConfig, role: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    if let Some(debug) = &config.librdkafka_debug {
        c.set("debug", debug)
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    c.set("bootstrap.servers", &config.bootstrap)
        .set("client.id", format!("{}-{role}", config.client_id))
        .set("socket.keepalive.enable", "true")
        .set("socket.nagle.disable", "true")
        .set(
            "socket.connection.setup.timeout.ms",
            config.request_timeout_ms.max(1000).to_string(),
        );
    c
}

/// Settings of an idempotent producer (`acks=all`).
pub(crate) fn producer_config(config: &KafkaConfig, role: &str) -> ClientConfig {
    let mut c = base_config(config, role);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set(
            "message.timeout.ms",
            config.delivery_timeout_ms.max(1000).to_string(),
        );
    c
}

/// Settings of a consumer that never joins a group: it only assigns, reads
/// committed data and stops with an error below the low watermark.
pub(crate) fn reader_config(config: &KafkaConfig) -> ClientConfig {
    let fetch_bytes = config.fetch_max_bytes.max(1024);
    let mut c = base_config(config, "reader");

    // librdkafka refuses `assign` without a group id; this group is never
    // joined and nothing is ever committed under it.
    c.set("group.id", format!("{}-reader", config.client_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false")
        // Reads are short and bounded: answer as soon as data is there
        // (tansu holds every fetch for the full wait), fetch no further ahead
        // than the records already queued, and bound the response at the
        // request level too (tansu ignores the per-partition bound).
        .set("fetch.wait.max.ms", "10")
        .set("fetch.error.backoff.ms", "10")
        .set("queued.min.messages", "1")
        .set("fetch.queue.backoff.ms", "1")
        .set("max.partition.fetch.bytes", fetch_bytes.to_string())
        .set("fetch.max.bytes", fetch_bytes.to_string())
        .set("message.max.bytes", fetch_bytes.to_string());
    c
}

impl Clients {
    pub(crate) fn new(config: KafkaConfig) -> Result<Clients, LogError> {
        let admin = base_config(&config, "admin")
            .create_with_context::<_, AdminClient<TracingContext>>(TracingContext)
            .map_err(|e| kafka_error("creating the admin client", &e))?;
        let producer = producer_config(&config, "producer")
            .create_with_context::<_, Producer>(TracingContext)
            .map_err(|e| kafka_error("creating the producer", &e))?;
        let clients = Clients {
            config,
            admin,
            producer,
            produce_lock: Mutex::new(()),
            readers: Mutex::new(Vec::new()),
            partition_readers: Default::default(),
            groups: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
        };
        // Create one reader now so that configuration errors surface at connect.
        let reader = clients.new_reader()?;
        lock(&clients.readers).push(reader);
        Ok(clients)
    }

    fn new_reader(&self) -> Result<Reader, LogError> {
        reader_config(&self.config)
            .create_with_context::<_, Reader>(TracingContext)
            .map_err(|e| kafka_error("creating a consumer", &e))
    }

    /// Borrows a reader from the pool (or makes one).
    pub(crate) fn take_reader(&self) -> Result<Reader, LogError> {
        match lock(&self.readers).pop() {
            Some(c) => Ok(c),
            None => self.new_reader(),
        }
    }

    /// Returns a reader to the pool, unassigned.
    pub(crate) fn put_reader(&self, reader: Reader) {
        if reader.unassign().is_err() {
            return; // drop a consumer in a doubtful state
        }
        let mut pool = lock(&self.readers);
        if pool.len() < READER_POOL_SIZE {
            pool.push(reader);
        }
    }

    /// A (never subscribing) consumer with `group.id = group`, for reading
    /// and committing the group's offsets and for its group metadata.
    pub(crate) fn group_client(&self, group: &str) -> Result<Arc<Reader>, LogError> {
        let mut groups = lock(&self.groups);
        if let Some(c) = groups.get(group) {
            return Ok(c.clone());
        }
        let mut cfg = reader_config(&self.config);
        cfg.set("group.id", group)
            .set("client.id", format!("{}-group", self.config.client_id));
        let c = Arc::new(
            cfg.create_with_context::<_, Reader>(TracingContext)
                .map_err(|e| kafka_error(format!("creating a consumer for group `{group}`"), &e))?,
        );
        groups.insert(group.to_string(), c.clone());
        Ok(c)
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.config.request_timeout()
    }

    /// Forgets the cached partition count of `topic`.
    pub(crate) fn forget_topic(&self, topic: &str) {
        lock(&self.partitions).remove(topic);
    }

    pub(crate) fn cached_partitions(&self, topic: &str) -> Option<i32> {
        lock(&self.partitions).get(topic).copied()
    }

    pub(crate) fn cache_partitions(&self, topic: &str, count: i32) {
        lock(&self.partitions).insert(topic.to_string(), count);
    }
}

/// Partition ids of `topic` from fresh metadata; `None` if the topic does not exist.
pub(crate) fn fetch_topic_partitions(
    clients: &Clients,
    topic: &str,
) -> Result<Option<Vec<i32>>, LogError> {
    let reader = clients.take_reader()?;
    let result = reader.fetch_metadata(Some(topic), clients.timeout());
    clients.put_reader(reader);
    let metadata =
        result.map_err(|e| kafka_error(format!("fetching metadata of `{topic}`"), &e))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        return match code {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => Ok(None),
            // A topic that is being created has no leader yet: report it as
            // absent so that callers wait or fail clearly.
            RDKafkaErrorCode::LeaderNotAvailable => Ok(None),
            other => Err(kafka_detail(
                format!("fetching metadata of `{topic}`"),
                format!("broker reported {other}"),
            )),
        };
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Ok(None);
    }
    clients.cache_partitions(topic, ids.len() as i32);
    Ok(Some(ids))
}

/// Names of all topics, from fresh metadata.
pub(crate) fn fetch_topic_names(clients: &Clients) -> Result<Vec<String>, LogError> {
    let reader = clients.take_reader()?;
    let result = reader.fetch_metadata(None, clients.timeout());
    clients.put_reader(reader);
    let metadata = result.map_err(|e| kafka_error("listing topics", &e))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_string())
        .collect())
}

/// `(low, high)` watermarks of one partition.
pub(crate) fn fetch_watermarks(
    clients: &Clients,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), LogError> {
    let reader = clients.take_reader()?;
    let result = reader.fetch_watermarks(topic, partition, clients.timeout());
    clients.put_reader(reader);
    result.map_err(|e| kafka_error(format!("fetching watermarks of {topic}[{partition}]"), &e))
}

/// Reads `[from, until)` of one partition, at most `max` records, stopping
/// early at the end of the committed data. The caller checked `from` against
/// the watermarks.
pub(crate) fn read_range(
    clients: &Clients,
    topic: &str,
    partition: i32,
    from: i64,
    until: i64,
    max: usize,
) -> Result<Vec<StoredRecord>, LogError> {
    let operation = || format!("reading {topic}[{partition}] from offset {from}");
    if max == 0 || from >= until {
        return Ok(Vec::new());
    }
    let reader = clients.take_reader()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|e| kafka_error(operation(), &e))?;
    if let Err(e) = reader.assign(&tpl) {
        return Err(kafka_error(operation(), &e));
    }
    // Fails only when nothing arrives for a whole timeout, however long a
    // big read takes overall.
    let mut deadline = Instant::now() + clients.timeout();
    let mut out: Vec<StoredRecord> = Vec::new();
    let result = loop {
        let next = out.last().map_or(from, |r| r.offset + 1);
        if out.len() >= max || next >= until {
            break Ok(());
        }
        if Instant::now() >= deadline {
            break if out.is_empty() {
                Err(kafka_detail(
                    operation(),
                    format!(
                        "no record arrived within {} ms although the high watermark is {until} \
                         (hint: a slow broker may need a smaller fetch_max_bytes)",
                        clients.config.request_timeout_ms
                    ),
                ))
            } else {
                Ok(()) // a partial read; the caller continues from there
            };
        }
        match reader.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                if m.topic() != topic || m.partition() != partition || m.offset() < next {
                    continue; // left over from an earlier assignment
                }
                out.push(to_stored(&m));
                deadline = Instant::now() + clients.timeout();
            }
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break Ok(()),
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                break Err(consumer_error(
                    clients,
                    topic,
                    partition,
                    next,
                    &e,
                    operation(),
                ));
            }
        }
    };
    clients.put_reader(reader);
    result.map(|()| out)
}

/// A consumer's error while reading `topic[partition]` at `requested`: an
/// offset out of range (retention removed the data between the watermark
/// check and the fetch) becomes [`LogError::OffsetOutOfRange`] with the
/// current watermarks; anything else a Kafka error of `operation`.
pub(crate) fn consumer_error(
    clients: &Clients,
    topic: &str,
    partition: i32,
    requested: i64,
    e: &KafkaError,
    operation: String,
) -> LogError {
    let code = e.rdkafka_error_code();
    if code == Some(RDKafkaErrorCode::OffsetOutOfRange)
        || code == Some(RDKafkaErrorCode::AutoOffsetReset)
    {
        let (low, high) = fetch_watermarks(clients, topic, partition).unwrap_or((-1, -1));
        LogError::OffsetOutOfRange {
            topic: topic.to_string(),
            partition,
            requested,
            low,
            high,
        }
    } else {
        kafka_error(operation, e)
    }
}

pub(crate) fn to_stored<M: Message>(m: &M) -> StoredRecord {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    StoredRecord {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        record: Record {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        },
    }
}

/// One record to produce to an explicit partition.
pub(crate) struct Outgoing<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub record: &'a Record,
    /// Headers added after the record's own.
    pub extra_headers: Vec<(&'static str, Vec<u8>)>,
}

/// Produces `records` with `producer`, in order, and awaits every delivery.
/// Returns each record's offset. Records to one partition are enqueued
/// contiguously, so the idempotent producer keeps them in order.
pub(crate) async fn produce_all(
    clients: &Clients,
    producer: &Producer,
    records: &[Outgoing<'_>],
    operation: &str,
) -> Result<Vec<i64>, LogError> {
    let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
    let mut enqueue_error = None;
    let mut next = 0;
    while next < records.len() && enqueue_error.is_none() {
        {
            let _guard = lock(&clients.produce_lock);
            while next < records.len() {
                let o = &records[next];
                let mut headers =
                    OwnedHeaders::new_with_capacity(o.record.headers.len() + o.extra_headers.len());
                for h in &o.record.headers {
                    headers = headers.insert(KHeader {
                        key: &h.key,
                        value: Some(&h.value),
                    });
                }
                for (k, v) in &o.extra_headers {
                    headers = headers.insert(KHeader {
                        key: k,
                        value: Some(v),
                    });
                }
                let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(o.topic)
                    .partition(o.partition)
                    .payload(o.record.value.as_slice())
                    .timestamp(o.record.timestamp_ms)
                    .headers(headers);
                if let Some(k) = &o.record.key {
                    fr = fr.key(k.as_slice());
                }
                match producer.send_result(fr) {
                    Ok(d) => {
                        deliveries.push(d);
                        next += 1;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
                    Err((e, _)) => {
                        enqueue_error = Some(kafka_error(
                            format!("{operation} (to {}[{}])", o.topic, o.partition),
                            &e,
                        ));
                        break;
                    }
                }
            }
        }
        if next < records.len() && enqueue_error.is_none() {
            // The local queue is full: let librdkafka drain it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Await every enqueued record even after an error, so that the caller
    // knows nothing of this call is still in flight when it returns.
    let mut offsets = Vec::with_capacity(deliveries.len());
    let mut first_error = enqueue_error;
    for (i, d) in deliveries.into_iter().enumerate() {
        match d.await {
            Ok(Ok(delivery)) => offsets.push(delivery.offset),
            Ok(Err((e, _))) => {
                if first_error.is_none() {
                    let o = &records[i];
                    first_error = Some(delivery_error(operation, o.topic, o.partition, &e));
                }
            }
            Err(_) => {
                if first_error.is_none() {
                    first_error = Some(kafka_detail(operation, "the producer was closed"));
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(offsets),
    }
}

fn delivery_error(operation: &str, topic: &str, partition: i32, e: &KafkaError) -> LogError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            LogError::UnknownTopic(topic.to_string())
        }
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => LogError::RecordTooLarge {
            size: 0,
            limit: crate::log::MAX_RECORD_BYTES,
        },
        _ => kafka_error(format!("{operation} (to {topic}[{partition}])"), e),
    }
}

/// The committed offsets of `group` on the given partitions of `topic`.
pub(crate) fn fetch_group_offsets(
    clients: &Clients,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, LogError> {
    let operation = || format!("reading committed offsets of group `{group}` on `{topic}`");
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let consumer = clients.group_client(group)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    // The group client reads `read_committed`, so the broker answers only
    // stable offsets: while a transaction that sent offsets for this group is
    // open (e.g. its writer was killed mid-transaction) the answer waits.
    let committed = consumer
        .committed_offsets(tpl, clients.timeout())
        .map_err(|e| match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::OperationTimedOut) => kafka_detail(
                operation(),
                format!(
                    "{e}; hint: if a transactions-mode writer of this group died mid-transaction, \
                     its offsets stay unstable until a new incarnation opens (which aborts the \
                     transaction) or the broker's transaction timeout passes"
                ),
            ),
            _ => kafka_error(operation(), &e),
        })?;
    let mut out = BTreeMap::new();
    for e in committed.elements_for_topic(topic) {
        if let Err(err) = e.error() {
            return Err(kafka_error(operation(), &err));
        }
        if let Offset::Offset(o) = e.offset() {
            out.insert(e.partition(), o);
        }
    }
    Ok(out)
}

/// Commits `positions` ((topic, partition) → next offset) for `group`.
pub(crate) fn commit_group_offsets(
    clients: &Clients,
    group: &str,
    positions: &BTreeMap<(String, i32), i64>,
) -> Result<(), LogError> {
    if positions.is_empty() {
        return Ok(());
    }
    let operation = || format!("committing offsets of group `{group}`");
    let consumer = clients.group_client(group)?;
    let tpl = positions_tpl(positions).map_err(|e| kafka_error(operation(), &e))?;
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| kafka_error(operation(), &e))
}

pub(crate) fn positions_tpl(
    positions: &BTreeMap<(String, i32), i64>,
) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in positions {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    Ok(tpl)
}

/// The first offset with a timestamp `>= timestamp_ms`, `None` past the end.
pub(crate) fn offset_for_time(
    clients: &Clients,
    topic: &str,
    partition: i32,
    timestamp_ms: i64,
) -> Result<Option<i64>, LogError> {
    let operation = || format!("looking up {topic}[{partition}] by timestamp {timestamp_ms}");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(timestamp_ms))
        .map_err(|e| kafka_error(operation(), &e))?;
    let reader = clients.take_reader()?;
    let result = reader.offsets_for_times(tpl, clients.timeout());
    clients.put_reader(reader);
    let found = result.map_err(|e| kafka_error(operation(), &e))?;
    let Some(elem) = found.find_partition(topic, partition) else {
        return Err(kafka_detail(
            operation(),
            "the broker returned no answer for the partition",
        ));
    };
    if let Err(e) = elem.error() {
        return Err(kafka_error(operation(), &e));
    }
    Ok(match elem.offset() {
        Offset::Offset(o) if o >= 0 => Some(o),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_a_retry_cannot_change_are_not_retryable() {
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        let e = kafka_error("produce", &refused);
        assert_eq!(e.kind(), crate::log::LogErrorKind::User, "{e}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "the rdkafka error is kept"
        );
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(
            kafka_error("produce", &down).kind(),
            crate::log::LogErrorKind::Transient
        );
    }
}
