//! The conformance suite on the file backend.
mod conformance;

use conductor_engine::log::{
    Log,
    file::{FileLog, FileLogOptions},
};
use std::any::Any;
use std::sync::Arc;

async fn make_log() -> (Arc<dyn Log>, Box<dyn Any + Send>) {
    let dir = tempfile::tempdir().unwrap();
    // Small segments so that the suite also crosses segment boundaries.
    let options = FileLogOptions {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        ..Default::default()
    };
    let log = FileLog::open(dir.path().join("log"), options).unwrap();
    (Arc::new(log), Box::new(dir))
}

conformance_tests!(make_log);
