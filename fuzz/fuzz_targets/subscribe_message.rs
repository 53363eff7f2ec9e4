//! The first message of a `/v1/subscribe` WebSocket session (topic, cursor,
//! `from`, filter, token): parsed, or refused as a bad request.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match conductor_replay::server::json_ws::parse_subscribe(text) {
        Ok(message) => assert!(!message.topic.is_empty(), "a subscription names its topic"),
        Err(refusal) => assert_eq!(refusal.code, "bad_request", "{}", refusal.message),
    }
});
