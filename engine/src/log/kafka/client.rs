//! The librdkafka clients of one [`KafkaLog`](super::KafkaLog): their
//! settings, the admin client and idempotent producer, the pool of one-shot
//! readers, the group clients and the cached partition counts.
//!
//! librdkafka's synchronous calls (metadata, watermarks, polls, offset commits)
//! block a thread for up to a broker round trip, so they run on tokio's
//! blocking pool ([`blocking`]), never on an async worker. What the clients
//! are used for lives beside this module: `metadata`, `scan` (one-shot
//! reads), `produce`, `groups`, and `partition_reader` (reads that continue).

use super::config::KafkaConfig;
use super::error::{kafka_detail, kafka_error};
use crate::log::LogError;
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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
        if is_not_ours(&error) {
            tracing::debug!(target: "librdkafka", error = %error, "{reason}");
        } else {
            tracing::warn!(target: "librdkafka", error = %error, "{reason}");
        }
    }
}

/// Client errors that are not errors of ours, logged at DEBUG: the end of a
/// partition is news (librdkafka's error callback reports it as
/// `Global(PartitionEOF)`, several times a partition whenever a reader
/// catches up), and a broker that can't be reached fails the operation that
/// needed it, which reports it once with a hint (librdkafka repeats it many
/// times).
fn is_not_ours(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        || is_connection_trouble(error)
}

/// The broker connection is down or being re-established: librdkafka
/// reconnects by itself and reports it as events on every client, consumers'
/// queues included. Such an event is news about the connection, not the
/// answer to a read: a read keeps waiting for its records (until its
/// timeout) instead of failing on it, so that a queue of these events left
/// from an outage doesn't fail reads long after the broker is back.
pub(crate) fn is_connection_trouble(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
        )
    )
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
    pub(super) produce_lock: Mutex<()>,
    readers: Mutex<Vec<Reader>>,
    groups: Mutex<HashMap<String, Arc<Reader>>>,
    /// topic → partition count, filled from metadata.
    partitions: Mutex<HashMap<String, i32>>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_partition_and_unreachable_brokers_are_not_warnings() {
        // As the error callback hands them over (`Global`) and as a poll does.
        assert!(is_not_ours(&KafkaError::Global(
            RDKafkaErrorCode::PartitionEOF
        )));
        assert!(is_not_ours(&KafkaError::PartitionEOF(3)));
        assert!(is_not_ours(&KafkaError::Global(
            RDKafkaErrorCode::AllBrokersDown
        )));
        assert!(!is_not_ours(&KafkaError::Global(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(!is_not_ours(&KafkaError::Global(RDKafkaErrorCode::Fatal)));
    }
}
