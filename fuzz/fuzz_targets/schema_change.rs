//! Schema change files (`conductor schema check OLD.avsc NEW.avsc`): the
//! input is two `.avsc` texts split at the first NUL byte. The checker never
//! panics, and a schema it can read is compatible with itself in every mode.
#![no_main]
use conductor_schemas::compat::{CompatMode, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let (old, new) = text.split_once('\0').unwrap_or((text, text));
    for mode in [CompatMode::Backward, CompatMode::Forward, CompatMode::Full] {
        if check(old, new, mode).is_ok() {
            assert!(
                check(old, old, mode).is_ok(),
                "a readable schema is {mode} compatible with itself"
            );
            assert!(
                check(new, new, mode).is_ok(),
                "a readable schema is {mode} compatible with itself"
            );
        }
    }
});
