//! The file log's transaction journal as found on disk: the input replaces
//! `txn/journal.log` beside two real topics. Opening replays committed
//! transactions or refuses with an error naming the corruption; once it
//! opened, opening again finds the same log.
#![no_main]
use conductor_engine::log::file::FileLog;
use conductor_engine::log::{Log, TopicConfig};
use conductor_fuzz::{block_on, contents, fresh_dir, options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let dir = fresh_dir("journal");
    {
        let log = FileLog::open(&dir, options()).expect("a new log opens");
        for (topic, partitions) in [("in", 1), ("out", 2)] {
            block_on(log.create_topic(topic, &TopicConfig::with_partitions(partitions)))
                .expect("create topic");
        }
    }
    let journal = dir.join("txn/journal.log");
    std::fs::create_dir_all(journal.parent().unwrap()).expect("txn dir");
    std::fs::write(&journal, bytes).expect("write the journal");

    if let Ok(reader) = FileLog::open_read_only(&dir, options()) {
        let _ = contents(&reader);
        let _ = block_on(reader.committed_positions("g", "in"));
    }
    let Ok(first) = FileLog::open(&dir, options()).map(|log| {
        let positions = block_on(log.committed_positions("g", "in")).ok();
        (
            contents(&log).expect("a recovered log reads back"),
            positions,
        )
    }) else {
        return;
    };
    let again = FileLog::open(&dir, options()).expect("a recovered log opens again");
    let positions = block_on(again.committed_positions("g", "in")).ok();
    assert_eq!(
        (contents(&again).expect("reads back"), positions),
        first,
        "replaying the journal twice gives the same log"
    );
});
