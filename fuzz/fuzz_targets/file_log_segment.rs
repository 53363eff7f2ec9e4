//! A file-log segment as found on disk after a crash or disk damage: the
//! input is the bytes of partition 0's only segment. Opening recovers
//! (truncates a torn or corrupt tail) or refuses with an error; what it
//! recovers reads back densely, and a second open finds the same records
//! (recovery is idempotent: nothing more is cut, nothing appears).
#![no_main]
use conductor_engine::log::file::FileLog;
use conductor_engine::log::{Log, Record, TopicConfig};
use conductor_fuzz::{block_on, contents, fresh_dir, options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let dir = fresh_dir("segment");
    {
        let log = FileLog::open(&dir, options()).expect("a new log opens");
        block_on(log.create_topic("t", &TopicConfig::with_partitions(1))).expect("create topic");
    }
    let partition = dir.join("topics/t/0");
    let segment = partition.join("00000000000000000000.log");
    assert!(
        segment.is_file(),
        "the writer's layout: {}",
        segment.display()
    );
    let _ = std::fs::remove_file(partition.join("00000000000000000000.index"));
    std::fs::write(&segment, bytes).expect("write the segment");

    // A reader that follows a writer sees the file as it is.
    if let Ok(reader) = FileLog::open_read_only(&dir, options()) {
        let _ = contents(&reader);
    }
    let Ok(first) = FileLog::open(&dir, options()).map(|log| {
        let held = contents(&log).expect("a recovered log reads back");
        // The recovered log takes writes after what it kept.
        let high = block_on(log.watermarks("t", 0)).expect("watermarks").1;
        let r = block_on(log.append("t", 0, vec![Record::new(None, b"after".to_vec())]))
            .expect("a recovered log appends");
        assert_eq!(r.first, high, "appends continue at the high watermark");
        held
    }) else {
        return;
    };
    let again = FileLog::open(&dir, options()).expect("a recovered log opens again");
    let now = contents(&again).expect("reads back");
    assert_eq!(
        now.len(),
        first.len() + 1,
        "the second open keeps every record"
    );
    assert_eq!(&now[..first.len()], &first[..], "and the same records");
});
