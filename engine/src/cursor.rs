//! Replay cursors: opaque, URL-safe, signed positions in a topic.
//!
//! A cursor names a topic, the next offset to read per partition and the
//! tenant it was issued to, and carries an HMAC-SHA256 tag under a server key
//! so that a client can neither forge nor edit one, nor use another tenant's.
//!
//! ```text
//! token   := base64url-nopad( version:u8 | body | tag[32] )
//! body    := tenant_len:u16 | tenant | topic_len:u16 | topic | n:u16 | (partition:i32 | offset:i64){n}
//! tag     := HMAC-SHA256(key, version | body)
//! ```

use crate::log::{Log, LogError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use std::collections::BTreeMap;
use std::path::Path;

/// The only format this build writes and reads.
pub const CURSOR_VERSION: u8 = 1;
const TAG_LEN: usize = 32;
/// Tokens longer than this are refused before decoding (no cursor is that big).
const MAX_TOKEN_CHARS: usize = 64 * 1024;

/// A position in one topic, for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub tenant: String,
    pub topic: String,
    /// partition → next offset to read.
    pub positions: BTreeMap<i32, i64>,
}

/// Why a cursor was refused. The messages are safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("malformed cursor: {0} (hint: pass a cursor exactly as the server returned it)")]
    Malformed(String),
    #[error(
        "unsupported cursor version {0} (this server reads version {CURSOR_VERSION}); start from `earliest` or `latest`"
    )]
    UnknownVersion(u8),
    #[error("cursor signature is invalid: it was altered, or issued by another server key")]
    BadSignature,
    #[error("cursor was issued to another tenant")]
    WrongTenant,
    #[error("cursor is for topic `{actual}`, not `{expected}`")]
    WrongTopic { expected: String, actual: String },
    #[error(
        "cursor expired: offset {offset} of {topic}[{partition}] was removed by retention (earliest is {earliest}); resubscribe from `earliest` or `latest`"
    )]
    Expired {
        topic: String,
        partition: i32,
        offset: i64,
        earliest: i64,
    },
    #[error("cursor points past the end of {topic}[{partition}] (offset {offset}, end {end})")]
    BeyondEnd {
        topic: String,
        partition: i32,
        offset: i64,
        end: i64,
    },
}

/// The server's HMAC key for cursors.
pub struct CursorKey {
    key: hmac::Key,
}

impl CursorKey {
    /// A key from secret bytes (at least 16).
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < 16 {
            return Err(format!(
                "cursor key must be at least 16 bytes, got {}",
                secret.len()
            ));
        }
        Ok(CursorKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// Loads the key from `path`, creating a random one there on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, LogError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::new(&bytes)
                .map_err(|e| LogError::InvalidArgument(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
                    .map_err(|_| {
                        LogError::InvalidArgument("no system randomness for a cursor key".into())
                    })?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, secret).map_err(|e| LogError::io(&tmp, e))?;
                std::fs::rename(&tmp, path).map_err(|e| LogError::io(path, e))?;
                Self::new(&secret).map_err(LogError::InvalidArgument)
            }
            Err(e) => Err(LogError::io(path, e)),
        }
    }

    /// Signs an opaque body for another kind of cursor (a search page):
    /// `kind` is its first byte, never [`CURSOR_VERSION`], so one kind of
    /// token is never accepted as another.
    pub fn seal(&self, kind: u8, body: &[u8]) -> String {
        debug_assert_ne!(kind, CURSOR_VERSION);
        let mut bytes = Vec::with_capacity(1 + body.len() + TAG_LEN);
        bytes.push(kind);
        bytes.extend_from_slice(body);
        let tag = hmac::sign(&self.key, &bytes);
        bytes.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Verifies a token made by [`seal`](Self::seal) with `kind` and
    /// returns its body.
    pub fn open(&self, kind: u8, token: &str) -> Result<Vec<u8>, CursorError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(CursorError::Malformed(format!(
                "{} characters is too long",
                token.len()
            )));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|e| CursorError::Malformed(format!("not URL-safe base64 ({e})")))?;
        if bytes.len() < 1 + TAG_LEN || bytes[0] != kind {
            return Err(CursorError::Malformed("not a cursor of this kind".into()));
        }
        let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        hmac::verify(&self.key, signed, tag).map_err(|_| CursorError::BadSignature)?;
        Ok(signed[1..].to_vec())
    }

    /// Encodes and signs a cursor.
    pub fn encode(&self, cursor: &Cursor) -> String {
        let mut bytes = vec![CURSOR_VERSION];
        put_str(&mut bytes, &cursor.tenant);
        put_str(&mut bytes, &cursor.topic);
        bytes.extend_from_slice(&(cursor.positions.len() as u16).to_le_bytes());
        for (p, o) in &cursor.positions {
            bytes.extend_from_slice(&p.to_le_bytes());
            bytes.extend_from_slice(&o.to_le_bytes());
        }
        let tag = hmac::sign(&self.key, &bytes);
        bytes.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Verifies and decodes a cursor for `tenant`.
    pub fn decode(&self, token: &str, tenant: &str) -> Result<Cursor, CursorError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(CursorError::Malformed(format!(
                "{} characters is too long",
                token.len()
            )));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|e| CursorError::Malformed(format!("not URL-safe base64 ({e})")))?;
        if bytes.len() < 1 + TAG_LEN {
            return Err(CursorError::Malformed("too short".into()));
        }
        if bytes[0] != CURSOR_VERSION {
            // Checked before the signature so old clients get a useful message;
            // nothing in an unverified token is trusted beyond this byte.
            return Err(CursorError::UnknownVersion(bytes[0]));
        }
        let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        hmac::verify(&self.key, signed, tag).map_err(|_| CursorError::BadSignature)?;
        let cursor =
            parse_body(&signed[1..]).ok_or_else(|| CursorError::Malformed("bad body".into()))?;
        if cursor.tenant != tenant {
            return Err(CursorError::WrongTenant);
        }
        Ok(cursor)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn parse_body(mut b: &[u8]) -> Option<Cursor> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h)
    }
    fn u16_(b: &mut &[u8]) -> Option<u16> {
        Some(u16::from_le_bytes(take(b, 2)?.try_into().ok()?))
    }
    fn str_(b: &mut &[u8]) -> Option<String> {
        let n = u16_(b)? as usize;
        String::from_utf8(take(b, n)?.to_vec()).ok()
    }
    let tenant = str_(&mut b)?;
    let topic = str_(&mut b)?;
    let n = u16_(&mut b)?;
    let mut positions = BTreeMap::new();
    for _ in 0..n {
        let p = i32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?);
        let o = i64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
        positions.insert(p, o);
    }
    b.is_empty().then_some(Cursor {
        tenant,
        topic,
        positions,
    })
}

/// Checks a decoded cursor against the log: every offset must still be
/// readable (else [`CursorError::Expired`]) and not beyond the end.
pub async fn check_against_log(
    log: &dyn Log,
    cursor: &Cursor,
) -> Result<Result<(), CursorError>, LogError> {
    for (&partition, &offset) in &cursor.positions {
        let (low, high) = log.watermarks(&cursor.topic, partition).await?;
        if offset < low {
            return Ok(Err(CursorError::Expired {
                topic: cursor.topic.clone(),
                partition,
                offset,
                earliest: low,
            }));
        }
        if offset > high {
            return Ok(Err(CursorError::BeyondEnd {
                topic: cursor.topic.clone(),
                partition,
                offset,
                end: high,
            }));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> CursorKey {
        CursorKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn sealed_bodies_open_only_with_their_kind_and_key() {
        let token = key().seal(7, b"page two");
        assert_eq!(key().open(7, &token).unwrap(), b"page two");
        assert!(key().open(8, &token).is_err(), "another kind");
        let other = CursorKey::new(b"another-key-of-32-bytes-length!!").unwrap();
        assert!(matches!(
            other.open(7, &token),
            Err(CursorError::BadSignature)
        ));
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[2] ^= 1;
        assert!(
            key().open(7, &URL_SAFE_NO_PAD.encode(bytes)).is_err(),
            "tampered"
        );
        let replay = key().encode(&Cursor {
            tenant: "acme".into(),
            topic: "t".into(),
            positions: Default::default(),
        });
        assert!(
            key().open(7, &replay).is_err(),
            "a replay cursor is not a page cursor"
        );
    }

    fn sample() -> Cursor {
        Cursor {
            tenant: "acme".into(),
            topic: "ig.changefeed.entities".into(),
            positions: [(0, 17), (1, 0), (2, 99_999)].into_iter().collect(),
        }
    }

    #[test]
    fn round_trips_and_is_url_safe() {
        let token = key().encode(&sample());
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(key().decode(&token, "acme").unwrap(), sample());
    }

    #[test]
    fn rejects_cursor_of_other_tenant() {
        let token = key().encode(&sample());
        assert_eq!(
            key().decode(&token, "globex"),
            Err(CursorError::WrongTenant)
        );
    }

    #[test]
    fn rejects_cursor_signed_by_other_key() {
        let other = CursorKey::new(b"another-key-of-32-bytes-length!!").unwrap();
        let token = other.encode(&sample());
        assert_eq!(key().decode(&token, "acme"), Err(CursorError::BadSignature));
    }

    #[test]
    fn rejects_truncated_cursor() {
        let token = key().encode(&sample());
        for cut in [0, 1, 10, token.len() / 2, token.len() - 1] {
            assert!(key().decode(&token[..cut], "acme").is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_unknown_version_clearly() {
        let token = key().encode(&sample());
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[0] = 9;
        let err = key()
            .decode(&URL_SAFE_NO_PAD.encode(bytes), "acme")
            .unwrap_err();
        assert_eq!(err, CursorError::UnknownVersion(9));
        assert!(err.to_string().contains("version 9"));
    }

    #[test]
    fn rejects_short_keys() {
        assert!(CursorKey::new(b"short").is_err());
    }

    proptest! {
        #[test]
        fn round_trips_any_cursor(
            tenant in "[a-z0-9-]{0,20}",
            topic in "[a-zA-Z0-9._-]{1,60}",
            positions in proptest::collection::btree_map(0i32..1000, 0i64..i64::MAX, 0..40),
        ) {
            let c = Cursor { tenant: tenant.clone(), topic, positions };
            prop_assert_eq!(key().decode(&key().encode(&c), &tenant).unwrap(), c);
        }

        #[test]
        fn any_altered_byte_is_rejected(idx in 0usize..200, flip in 1u8..=255) {
            let token = key().encode(&sample());
            let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
            let i = idx % bytes.len();
            bytes[i] ^= flip;
            prop_assert!(key().decode(&URL_SAFE_NO_PAD.encode(bytes), "acme").is_err());
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,300}") {
            let _ = key().decode(&s, "acme");
        }
    }
}
