//! What the fuzz targets share: the round trip every accepted event must
//! survive, scratch file logs laid out by the real writer, and signing of
//! fuzzed bodies so that the parsers behind a signature are reached too.

use conductor_engine::log::file::{FileLog, FileLogOptions, FsyncPolicy};
use conductor_engine::log::{Log, LogError, StoredRecord};
use conductor_schemas::Event;
use conductor_schemas::codec;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// An event the decoders accepted must encode in both forms without
/// panicking (`encode_avro` promises its value always matches the schema),
/// and each form must decode back to the same event. Compared as JSON
/// values, not bytes: Avro maps are written in apache-avro's `HashMap`
/// order, so two encodings of one event may order a map's entries apart
/// (found by this target; the bytes are not canonical, the event is).
pub fn assert_event_round_trips(event: &Event) {
    let as_value = |e: &Event| -> serde_json::Value {
        serde_json::from_slice(&codec::encode_json(e)).expect("the JSON form is JSON")
    };
    let want = as_value(event);
    let from_json = codec::decode_json(&codec::encode_json(event), None)
        .unwrap_or_else(|e| panic!("an accepted event's JSON form is refused: {e}"));
    assert_eq!(
        as_value(&from_json),
        want,
        "the JSON form reads back to the event"
    );
    let from_avro = codec::decode_avro(&codec::encode_avro(event))
        .unwrap_or_else(|e| panic!("an accepted event's Avro form is refused: {e}"));
    assert_eq!(
        as_value(&from_avro),
        want,
        "the Avro form reads back to the event"
    );
}

/// A current-thread runtime for the log's async API.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
    .block_on(f)
}

/// Where scratch logs live: tmpfs when there is one (fsyncs are free there).
fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("conductor-fuzz-{}", std::process::id()))
}

/// Options of the scratch logs: small segments, so a roll is reachable.
pub fn options() -> FileLogOptions {
    FileLogOptions {
        fsync: FsyncPolicy::EveryBatch,
        segment_bytes: 64 * 1024,
        ..FileLogOptions::default()
    }
}

/// A fresh, empty directory for one input (the previous input's is removed).
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch_root().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Every record of `topic[partition]`, in order, checking dense offsets.
pub fn read_all(log: &FileLog, topic: &str, partition: i32) -> Result<Vec<StoredRecord>, LogError> {
    let (low, high) = block_on(log.watermarks(topic, partition))?;
    let mut next = low;
    let mut out = Vec::new();
    while next < high {
        let batch = block_on(log.read(topic, partition, next, 1000))?;
        // A reader polling here would wait forever for records the
        // watermark promises.
        assert!(
            !batch.is_empty(),
            "{topic}[{partition}]: nothing at {next} below high watermark {high}"
        );
        for r in batch {
            assert_eq!(r.offset, next, "dense offsets in {topic}[{partition}]");
            next += 1;
            out.push(r);
        }
    }
    Ok(out)
}

/// What a log holds, for comparing two opens of the same files.
pub fn contents(log: &FileLog) -> Result<Vec<(String, i32, i64, Vec<u8>)>, LogError> {
    let mut out = Vec::new();
    let mut topics = block_on(log.list_topics())?;
    topics.sort();
    for topic in topics {
        let partitions = block_on(log.describe_topic(&topic))?.partitions.len() as i32;
        for p in 0..partitions {
            for r in read_all(log, &topic, p)? {
                out.push((topic.clone(), p, r.offset, r.record.value));
            }
        }
    }
    Ok(out)
}

/// Copies a directory tree (a template log into a scratch directory).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// HMAC-SHA256 of `bytes` with `secret`: what the cursor key and HS256
/// tokens sign with, so fuzzed bodies can be signed and reach the parsers
/// behind the signature check.
pub fn hmac_sha256(secret: &[u8], bytes: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, bytes).as_ref().to_vec()
}

/// The secret every target signs with.
pub const SECRET: &[u8] = b"conductor-fuzz-secret-0123456789abcdef";
