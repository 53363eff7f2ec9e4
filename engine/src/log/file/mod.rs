//! The file log: the embedded default backend.
//!
//! Layout under the root (`<data-dir>/log`):
//! ```text
//! LOCK                                   exclusive lock of the writing process
//! topics/<topic>/topic.json              partitions and retention
//! topics/<topic>/<p>/<base>.log|.index   segments of partition p
//! txn/journal.log                        transaction journal (see `journal`)
//! ```
//! One process writes (it holds `LOCK`); any number of processes may open
//! the log read-only and follow what the writer appends.

mod codec;
mod journal;
mod partition;
mod segment;

use super::*;
use journal::{FenceMeta, Journal, TxnMeta};
use partition::PartitionLog;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// When appended data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync after every append: an acknowledged record survives power loss.
    EveryBatch,
    /// fsync at most every N ms: a crash of the machine (not the process)
    /// may lose the last N ms of acknowledged appends.
    IntervalMs(u64),
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "every_batch" => Ok(FsyncPolicy::EveryBatch),
            other => other
                .strip_prefix("interval:")
                .and_then(|ms| ms.trim_end_matches("ms").parse().ok())
                .map(FsyncPolicy::IntervalMs)
                .ok_or_else(|| format!("unknown fsync policy `{other}` (use `every_batch` or `interval:<ms>`, e.g. `interval:100`)")),
        }
    }
}

/// Tuning of the file log. Defaults suit the embedded default.
#[derive(Debug, Clone)]
pub struct FileLogOptions {
    pub fsync: FsyncPolicy,
    /// A segment is rolled once it holds this many bytes.
    pub segment_bytes: u64,
    /// Bytes between sparse index entries.
    pub index_interval_bytes: u64,
    /// The transaction journal is compacted past this size.
    pub journal_max_bytes: u64,
}

impl Default for FileLogOptions {
    fn default() -> Self {
        FileLogOptions {
            fsync: FsyncPolicy::EveryBatch,
            segment_bytes: 64 * 1024 * 1024,
            index_interval_bytes: 4096,
            journal_max_bytes: 64 * 1024 * 1024,
        }
    }
}

struct TopicState {
    config: TopicConfig,
    partitions: Vec<Mutex<PartitionLog>>,
}

struct Inner {
    root: PathBuf,
    options: FileLogOptions,
    /// Held for the life of a writable log; `None` when read-only.
    lock: Option<File>,
    topics: RwLock<BTreeMap<String, Arc<TopicState>>>,
    journal: Option<Mutex<Journal>>,
    /// The first failed write or fsync: from then on the log refuses every
    /// write ([`LogError::Stopped`]) — a failed fsync is not retried as if
    /// it had succeeded (PostgreSQL's fsyncgate lesson); a restart recovers.
    failed: Mutex<Option<String>>,
}

/// A [`Log`] in files under one directory. Cloning shares it.
#[derive(Clone)]
pub struct FileLog {
    inner: Arc<Inner>,
}

fn lock_poisoned<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FileLog {
    /// Opens the log for reading and writing, recovering from any crash:
    /// torn tails are truncated and committed transactions completed.
    pub fn open(root: impl AsRef<Path>, options: FileLogOptions) -> Result<Self, LogError> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(root.join("topics")).map_err(|e| LogError::io(&root, e))?;
        let lock_path = root.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LogError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(LogError::Locked {
                path: root.display().to_string(),
                detail: "another conductor process is writing to it; stop it, or read with a read-only command".into(),
            });
        }
        let topics = load_topics(&root, &options, true)?;
        let (journal, txns) = Journal::open(&root)?;
        let log = FileLog {
            inner: Arc::new(Inner {
                root,
                options,
                lock: Some(lock),
                topics: RwLock::new(topics),
                journal: Some(Mutex::new(journal)),
                failed: Mutex::new(None),
            }),
        };
        log.replay_journal(txns)?;
        Ok(log)
    }

    /// Opens the log read-only (no lock; follows a writer in another process).
    pub fn open_read_only(
        root: impl AsRef<Path>,
        options: FileLogOptions,
    ) -> Result<Self, LogError> {
        let root = root.as_ref().to_path_buf();
        let topics = load_topics(&root, &options, false)?;
        Ok(FileLog {
            inner: Arc::new(Inner {
                root,
                options,
                lock: None,
                topics: RwLock::new(topics),
                journal: None,
                failed: Mutex::new(None),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn writable(&self) -> Result<(), LogError> {
        if self.inner.lock.is_none() {
            return Err(LogError::Unsupported(
                "writing through a read-only open",
                "file",
            ));
        }
        if let Some(first) = lock_poisoned(&self.inner.failed).clone() {
            return Err(LogError::Stopped { first });
        }
        Ok(())
    }

    /// Runs a write; a failed write or fsync stops the log for writes (see
    /// `Inner::failed`) and is logged once, naming the file.
    fn write<T>(&self, op: impl FnOnce() -> Result<T, LogError>) -> Result<T, LogError> {
        self.writable()?;
        let result = op();
        if let Err(e @ LogError::WriteFailed { .. }) = &result {
            self.stop_writing(e);
        }
        result
    }

    /// Refuses every later write (the first failure is kept and logged).
    fn stop_writing(&self, error: &LogError) {
        let mut failed = lock_poisoned(&self.inner.failed);
        if failed.is_none() {
            tracing::error!(error = %error, "the file log stops writing");
            *failed = Some(error.to_string());
        }
    }

    fn topic(&self, name: &str) -> Result<Arc<TopicState>, LogError> {
        if let Some(t) = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(t.clone());
        }
        if self.inner.lock.is_none() {
            // A read-only open may not have seen a topic the writer created since.
            let fresh = load_topics(&self.inner.root, &self.inner.options, false)?;
            let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
            for (k, v) in fresh {
                topics.entry(k).or_insert(v);
            }
            if let Some(t) = topics.get(name) {
                return Ok(t.clone());
            }
        }
        Err(LogError::UnknownTopic(name.to_string()))
    }

    fn with_partition<T>(
        &self,
        topic: &str,
        partition: i32,
        f: impl FnOnce(&mut PartitionLog, &TopicConfig) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let t = self.topic(topic)?;
        let p = partition_of(&t, topic, partition)?;
        let mut guard = lock_poisoned(p);
        guard.refresh()?;
        f(&mut guard, &t.config)
    }

    /// Completes every journaled transaction whose batches some partition lacks.
    fn replay_journal(&self, txns: Vec<journal::Entry>) -> Result<(), LogError> {
        let mut repaired = 0usize;
        for entry in txns {
            let meta: TxnMeta =
                serde_json::from_slice(&entry.meta).map_err(|e| LogError::Corrupt {
                    location: "transaction journal".into(),
                    detail: e.to_string(),
                })?;
            let mut pos = 0usize;
            for (topic, partition, len) in meta.batches {
                let bytes = entry.payload.get(pos..pos + len as usize).ok_or_else(|| {
                    LogError::Corrupt {
                        location: "transaction journal".into(),
                        detail: "entry shorter than its batches".into(),
                    }
                })?;
                pos += len as usize;
                let view = codec::open_batch(bytes).map_err(|_| LogError::Corrupt {
                    location: "transaction journal".into(),
                    detail: format!("bad batch for {topic}[{partition}]"),
                })?;
                let (base, next) = (view.base_offset, view.next_offset());
                self.with_partition(&topic, partition, |p, cfg| {
                    let high = p.high_watermark();
                    if high >= next {
                        Ok(())
                    } else if high == base {
                        repaired += 1;
                        p.append_encoded(bytes, cfg, true)
                    } else {
                        Err(LogError::Corrupt {
                            location: format!("{topic}[{partition}]"),
                            detail: format!(
                                "high watermark {high} is inside journaled batch {base}..{next}"
                            ),
                        })
                    }
                })?;
            }
        }
        if repaired > 0 {
            tracing::warn!(
                batches = repaired,
                "completed committed transactions after an unclean shutdown"
            );
        }
        Ok(())
    }

    /// fsyncs every partition (used before journal compaction and on close).
    pub fn sync_all(&self) -> Result<(), LogError> {
        let topics: Vec<_> = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for t in topics {
            for p in &t.partitions {
                lock_poisoned(p).sync()?;
            }
        }
        Ok(())
    }

    /// Applies retention to every partition now; returns segments removed.
    pub fn enforce_retention(&self) -> Result<usize, LogError> {
        self.write(|| self.enforce_retention_now())
    }

    fn enforce_retention_now(&self) -> Result<usize, LogError> {
        let topics: Vec<_> = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut removed = 0;
        for t in topics {
            for p in &t.partitions {
                removed += lock_poisoned(p).enforce_retention(&t.config)?;
            }
        }
        Ok(removed)
    }

    /// The files of a new topic; `topic.json` last, atomically: its
    /// presence is what makes the topic exist.
    fn create_topic_files(&self, topic: &str, config: &TopicConfig) -> Result<(), LogError> {
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        if topics.contains_key(topic) {
            return Err(LogError::TopicExists(topic.to_string()));
        }
        let dir = topic_dir(&self.inner.root, topic);
        std::fs::create_dir_all(&dir).map_err(|e| LogError::write_failed("create", &dir, e))?;
        let partitions = (0..config.partitions)
            .map(|p| {
                PartitionLog::open(topic, p, dir.join(p.to_string()), &self.inner.options, true)
                    .map(Mutex::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tmp = dir.join("topic.json.tmp");
        let json = serde_json::to_vec_pretty(config)
            .map_err(|e| LogError::InvalidArgument(e.to_string()))?;
        std::fs::write(&tmp, json).map_err(|e| LogError::write_failed("write to", &tmp, e))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| LogError::write_failed("fsync", &tmp, e))?;
        std::fs::rename(&tmp, dir.join("topic.json"))
            .map_err(|e| LogError::write_failed("rename into", &dir, e))?;
        partition::sync_dir(&dir)?;
        partition::sync_dir(&self.inner.root.join("topics"))?;
        topics.insert(
            topic.to_string(),
            Arc::new(TopicState {
                config: config.clone(),
                partitions,
            }),
        );
        Ok(())
    }

    fn commit_txn(
        &self,
        writer_id: &str,
        epoch: u64,
        group: &str,
        txn: Transaction,
    ) -> Result<Vec<(String, i32, i64)>, LogError> {
        let journal_mutex = self.inner.journal.as_ref().ok_or(LogError::Unsupported(
            "transactions on a read-only open",
            "file",
        ))?;
        let mut journal = lock_poisoned(journal_mutex);
        if journal.state.epochs.get(writer_id).copied() != Some(epoch) {
            return Err(LogError::Fenced {
                writer_id: writer_id.to_string(),
                epoch,
            });
        }
        // Group outputs per partition, keeping their order.
        let mut groups: BTreeMap<(String, i32), Vec<(usize, Record)>> = BTreeMap::new();
        let n = txn.outputs.len();
        for (i, o) in txn.outputs.into_iter().enumerate() {
            validate_records(std::slice::from_ref(&o.record))?;
            groups
                .entry((o.topic, o.partition))
                .or_default()
                .push((i, o.record));
        }
        // Lock every target partition (sorted order: no deadlock with other commits).
        let topics: Vec<(Arc<TopicState>, i32, String)> = groups
            .keys()
            .map(|(t, p)| Ok((self.topic(t)?, *p, t.clone())))
            .collect::<Result<_, LogError>>()?;
        let mut guards = Vec::with_capacity(topics.len());
        for (t, p, name) in &topics {
            guards.push(lock_poisoned(partition_of(t, name, *p)?));
        }
        let mut payload = Vec::new();
        let mut batches = Vec::with_capacity(groups.len());
        let mut offsets = vec![(String::new(), 0, 0); n];
        for (((topic, partition), recs), guard) in groups.iter().zip(guards.iter()) {
            let base = guard.high_watermark();
            let start = payload.len();
            let records: Vec<Record> = recs.iter().map(|(_, r)| r.clone()).collect();
            codec::encode_batch(&mut payload, base, &records);
            batches.push((topic.clone(), *partition, (payload.len() - start) as u32));
            for (k, (i, _)) in recs.iter().enumerate() {
                offsets[*i] = (topic.clone(), *partition, base + k as i64);
            }
        }
        let meta = TxnMeta {
            writer_id: writer_id.to_string(),
            epoch,
            group: group.to_string(),
            positions: txn
                .positions
                .iter()
                .map(|p| (p.topic.clone(), p.partition, p.next_offset))
                .collect(),
            batches,
        };
        let meta_bytes =
            serde_json::to_vec(&meta).map_err(|e| LogError::InvalidArgument(e.to_string()))?;
        // The commit point: once this entry is durable the transaction happened.
        journal.append(journal::KIND_TXN, &meta_bytes, &payload)?;
        // Committed from here on, whatever happens next: a failure to apply
        // the batches to their partitions stops the log for writes, and a
        // restart's journal replay applies them.
        let mut pos = 0usize;
        for ((batch, guard), (t, _, _)) in meta
            .batches
            .iter()
            .zip(guards.iter_mut())
            .zip(topics.iter())
        {
            let len = batch.2 as usize;
            if let Err(e) = guard.append_encoded(&payload[pos..pos + len], &t.config, false) {
                self.stop_writing(&e);
                return Ok(offsets);
            }
            pos += len;
        }
        if journal.len > self.inner.options.journal_max_bytes {
            // Compaction (the transaction is committed already): a failure
            // stops the log for writes; the journal still holds everything.
            let compacted = guards
                .iter_mut()
                .try_for_each(|g| g.sync())
                .and_then(|()| {
                    drop(guards);
                    self.sync_all()
                })
                .and_then(|()| journal.compact());
            if let Err(e) = compacted {
                self.stop_writing(&e);
            }
        }
        Ok(offsets)
    }
}

fn partition_of<'a>(
    t: &'a TopicState,
    topic: &str,
    partition: i32,
) -> Result<&'a Mutex<PartitionLog>, LogError> {
    usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or(LogError::UnknownPartition {
            topic: topic.to_string(),
            partition,
            partitions: t.partitions.len() as i32,
        })
}

fn topic_dir(root: &Path, topic: &str) -> PathBuf {
    root.join("topics").join(topic)
}

fn load_topics(
    root: &Path,
    options: &FileLogOptions,
    writable: bool,
) -> Result<BTreeMap<String, Arc<TopicState>>, LogError> {
    let dir = root.join("topics");
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(LogError::io(&dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(&dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let meta_path = entry.path().join("topic.json");
        let text = match std::fs::read(&meta_path) {
            Ok(t) => t,
            // A topic directory without metadata is a crashed create: ignore it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LogError::io(&meta_path, e)),
        };
        let config: TopicConfig = serde_json::from_slice(&text).map_err(|e| LogError::Corrupt {
            location: meta_path.display().to_string(),
            detail: e.to_string(),
        })?;
        let partitions = (0..config.partitions)
            .map(|p| {
                PartitionLog::open(
                    &name,
                    p,
                    entry.path().join(p.to_string()),
                    options,
                    writable,
                )
                .map(Mutex::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(name, Arc::new(TopicState { config, partitions }));
    }
    Ok(out)
}

#[async_trait]
impl Log for FileLog {
    fn backend(&self) -> &'static str {
        "file"
    }

    async fn create_topic(&self, topic: &str, config: &TopicConfig) -> Result<(), LogError> {
        validate_topic_name(topic)?;
        self.writable()?;
        if config.partitions < 1 || config.partitions > 10_000 {
            return Err(LogError::InvalidArgument(format!(
                "partitions must be between 1 and 10000, got {}",
                config.partitions
            )));
        }
        self.write(|| self.create_topic_files(topic, config))
    }

    async fn list_topics(&self) -> Result<Vec<String>, LogError> {
        if self.inner.lock.is_none() {
            let fresh = load_topics(&self.inner.root, &self.inner.options, false)?;
            return Ok(fresh.into_keys().collect());
        }
        Ok(self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect())
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, LogError> {
        let t = self.topic(topic)?;
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (i, p) in t.partitions.iter().enumerate() {
            let mut g = lock_poisoned(p);
            g.refresh()?;
            partitions.push(PartitionInfo {
                partition: i as i32,
                low_watermark: g.low_watermark(),
                high_watermark: g.high_watermark(),
            });
        }
        Ok(TopicDescription {
            topic: topic.to_string(),
            partitions,
        })
    }

    async fn append(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<Record>,
    ) -> Result<AppendedRange, LogError> {
        self.writable()?;
        validate_records(&records)?;
        if records.is_empty() {
            return Err(LogError::InvalidArgument(
                "cannot append an empty batch".into(),
            ));
        }
        let n = records.len() as i64;
        let append = move |log: &FileLog, topic: &str| {
            log.write(|| log.with_partition(topic, partition, |p, cfg| p.append(&records, cfg)))
                .map(|first| AppendedRange {
                    first,
                    last: first + n - 1,
                })
        };
        if let FsyncPolicy::IntervalMs(_) = self.inner.options.fsync {
            // Without a per-append fsync this is a page-cache write of a few
            // microseconds; a thread hop would cost more than it saves. The
            // periodic fsync blocks this task briefly once per interval.
            return append(self, topic);
        }
        let this = self.clone();
        let topic = topic.to_string();
        // fsync blocks for milliseconds: keep it off the async worker threads.
        tokio::task::spawn_blocking(move || append(&this, &topic))
            .await
            .map_err(|e| LogError::InvalidArgument(format!("append task failed: {e}")))?
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        max_records: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        self.with_partition(topic, partition, |p, _| p.read(from, max_records))
    }

    async fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), LogError> {
        self.with_partition(topic, partition, |p, _| {
            Ok((p.low_watermark(), p.high_watermark()))
        })
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, LogError> {
        self.with_partition(topic, partition, |p, _| {
            p.offset_for_timestamp(timestamp_ms)
        })
    }

    async fn open_writer(
        &self,
        group: &str,
        writer_id: &str,
    ) -> Result<Box<dyn TransactionalWriter>, LogError> {
        self.writable()?;
        let journal_mutex = self.inner.journal.as_ref().ok_or(LogError::Unsupported(
            "transactions on a read-only open",
            "file",
        ))?;
        let mut journal = lock_poisoned(journal_mutex);
        let epoch = journal.state.epochs.get(writer_id).copied().unwrap_or(0) + 1;
        let meta = serde_json::to_vec(&FenceMeta {
            writer_id: writer_id.to_string(),
            epoch,
        })
        .map_err(|e| LogError::InvalidArgument(e.to_string()))?;
        self.write(|| journal.append(journal::KIND_FENCE, &meta, &[]))?;
        Ok(Box::new(FileWriter {
            log: self.clone(),
            group: group.to_string(),
            writer_id: writer_id.to_string(),
            epoch,
        }))
    }

    async fn committed_positions(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<i32, i64>, LogError> {
        let state = match &self.inner.journal {
            Some(j) => lock_poisoned(j).state.clone(),
            None => Journal::read_state(&self.inner.root)?,
        };
        Ok(state
            .positions
            .get(group)
            .and_then(|g| g.get(topic))
            .cloned()
            .unwrap_or_default())
    }
}

struct FileWriter {
    log: FileLog,
    group: String,
    writer_id: String,
    epoch: u64,
}

#[async_trait]
impl TransactionalWriter for FileWriter {
    fn writer_id(&self) -> &str {
        &self.writer_id
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    async fn commit(&mut self, txn: Transaction) -> Result<Vec<(String, i32, i64)>, LogError> {
        let log = self.log.clone();
        let (writer_id, group, epoch) = (self.writer_id.clone(), self.group.clone(), self.epoch);
        tokio::task::spawn_blocking(move || {
            log.write(|| log.commit_txn(&writer_id, epoch, &group, txn))
        })
        .await
        .map_err(|e| LogError::InvalidArgument(format!("commit task failed: {e}")))?
    }
}
