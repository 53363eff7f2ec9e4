//! Subscription and replay cursors: the input as a token a client sends
//! (almost always refused at the signature), and as a body signed with the
//! key, which reaches the parser behind the signature. A cursor that
//! decodes encodes back to a token that decodes to the same cursor.
#![no_main]
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use conductor_engine::cursor::{CURSOR_VERSION, CursorKey};
use conductor_fuzz::{SECRET, hmac_sha256};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let key = CursorKey::new(SECRET).expect("a cursor key");
    let check = |token: &str| {
        for tenant in ["acme", ""] {
            if let Ok(cursor) = key.decode(token, tenant) {
                assert_eq!(
                    cursor.tenant, tenant,
                    "a cursor is only accepted for its tenant"
                );
                let again = key.encode(&cursor);
                assert_eq!(
                    key.decode(&again, tenant).ok(),
                    Some(cursor),
                    "re-encoded cursors decode"
                );
            }
        }
        let _ = key.open(7, token);
    };
    if let Ok(token) = std::str::from_utf8(bytes) {
        check(token);
    }
    let mut signed = vec![CURSOR_VERSION];
    signed.extend_from_slice(bytes);
    let tag = hmac_sha256(SECRET, &signed);
    signed.extend_from_slice(&tag);
    check(&URL_SAFE_NO_PAD.encode(&signed));
});
