//! Bearer tokens (subscriptions, lineage ingest): the input as an
//! `Authorization` header value, and as the claims of an HS256 token signed
//! with the configured secret, which reaches the claim checks. A principal
//! is only ever granted with a non-empty tenant and the scope asked for.
#![no_main]
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use conductor_fuzz::{SECRET, hmac_sha256};
use conductor_replay::subscribe::auth::{Authenticator, bearer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let auth = Authenticator::new(Some(SECRET));
    let check = |token: Option<&str>| {
        for scope in ["subscribe", "lineage:write"] {
            if let Ok(principal) = auth.verify(token, scope) {
                assert!(!principal.tenant.is_empty(), "a principal has a tenant");
                assert!(
                    principal.scopes.iter().any(|s| s == scope),
                    "and the scope asked for"
                );
            }
        }
    };
    if let Ok(header) = std::str::from_utf8(bytes) {
        check(bearer(Some(header)));
        check(Some(header));
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(bytes));
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(SECRET, signing_input.as_bytes()));
    check(Some(&format!("{signing_input}.{signature}")));
});
