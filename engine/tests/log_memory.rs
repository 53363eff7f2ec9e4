//! The conformance suite on the memory backend.
mod conformance;

use conductor_engine::log::{Log, memory::MemoryLog};
use std::any::Any;
use std::sync::Arc;

async fn make_log() -> (Arc<dyn Log>, Box<dyn Any + Send>) {
    (Arc::new(MemoryLog::new()), Box::new(()))
}

conformance_tests!(make_log);
