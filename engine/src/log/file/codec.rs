//! On-disk framing of record batches.
//!
//! ```text
//! batch  := magic:u8 (0xC7) | len:u32 | crc:u32 | body            (len = 4 + body.len())
//! body   := base_offset:i64 | count:u32 | max_timestamp:i64 | record{count}
//! record := rec_len:u32 | rec_crc:u32 | timestamp:i64 | key_len:i32 (-1 = no key) | key
//!           | value_len:u32 | value | header_count:u16 | (hkey_len:u16 | hkey | hval_len:u32 | hval){header_count}
//! ```
//! All integers little-endian; CRCs are CRC-32C. The batch CRC makes a batch
//! atomic: recovery drops a torn batch whole. Each record also carries its own
//! length and CRC so that a damaged record is reported precisely on read.

use crate::log::{Header, Record};

pub const BATCH_MAGIC: u8 = 0xC7;
/// magic + len + crc.
pub const BATCH_HEADER_LEN: usize = 1 + 4 + 4;
/// base_offset + count + max_timestamp.
const BODY_PREFIX_LEN: usize = 8 + 4 + 8;
/// Refuse to believe a batch larger than this (guards against garbage lengths).
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// Appends one encoded batch holding `records` (offsets `base_offset..`) to `out`.
pub fn encode_batch(out: &mut Vec<u8>, base_offset: i64, records: &[Record]) {
    let start = out.len();
    out.push(BATCH_MAGIC);
    out.extend_from_slice(&[0; 8]); // len + crc, patched below
    let body_start = out.len();
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    let max_ts = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
    out.extend_from_slice(&max_ts.to_le_bytes());
    for r in records {
        encode_record(out, r);
    }
    let body_len = out.len() - body_start;
    let crc = crc32c::crc32c(&out[body_start..]);
    out[start + 1..start + 5].copy_from_slice(&((body_len + 4) as u32).to_le_bytes());
    out[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
}

fn encode_record(out: &mut Vec<u8>, r: &Record) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]); // rec_len + rec_crc
    let body_start = out.len();
    out.extend_from_slice(&r.timestamp_ms.to_le_bytes());
    match &r.key {
        Some(k) => {
            out.extend_from_slice(&(k.len() as i32).to_le_bytes());
            out.extend_from_slice(k);
        }
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
    }
    out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.value);
    out.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
    for h in &r.headers {
        out.extend_from_slice(&(h.key.len() as u16).to_le_bytes());
        out.extend_from_slice(h.key.as_bytes());
        out.extend_from_slice(&(h.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&h.value);
    }
    let crc = crc32c::crc32c(&out[body_start..]);
    let len = (out.len() - body_start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What a batch header says, before its body is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Whole batch size on disk, header included.
    pub total_len: usize,
    pub crc: u32,
}

/// Why bytes at a position are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not enough bytes: the end of what was written (or a torn write).
    Incomplete,
    /// The bytes are there but wrong.
    Invalid(String),
}

/// Parses the fixed batch header at the start of `buf`.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, FrameError> {
    if buf.len() < BATCH_HEADER_LEN {
        return Err(FrameError::Incomplete);
    }
    if buf[0] != BATCH_MAGIC {
        return Err(FrameError::Invalid(format!(
            "bad batch magic byte 0x{:02x} (expected 0x{BATCH_MAGIC:02x})",
            buf[0]
        )));
    }
    let len = u32::from_le_bytes(buf[1..5].try_into().unwrap_or_default()) as usize;
    if !(4 + BODY_PREFIX_LEN..=MAX_BATCH_BYTES).contains(&len) {
        return Err(FrameError::Invalid(format!(
            "implausible batch length {len}"
        )));
    }
    let crc = u32::from_le_bytes(buf[5..9].try_into().unwrap_or_default());
    Ok(BatchHeader {
        total_len: 1 + 4 + len,
        crc,
    })
}

/// A batch whose CRC checked out.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    pub base_offset: i64,
    pub count: u32,
    pub max_timestamp: i64,
    records: &'a [u8],
}

impl BatchView<'_> {
    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + self.count as i64
    }
}

/// Checks and opens the batch at the start of `buf` (which must hold at least
/// the whole batch; see [`parse_header`]).
pub fn open_batch(buf: &[u8]) -> Result<BatchView<'_>, FrameError> {
    let h = parse_header(buf)?;
    if buf.len() < h.total_len {
        return Err(FrameError::Incomplete);
    }
    let body = &buf[BATCH_HEADER_LEN..h.total_len];
    let actual = crc32c::crc32c(body);
    if actual != h.crc {
        return Err(FrameError::Invalid(format!(
            "batch CRC mismatch (stored {:08x}, computed {actual:08x})",
            h.crc
        )));
    }
    let base_offset = i64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
    let count = u32::from_le_bytes(body[8..12].try_into().unwrap_or_default());
    let max_timestamp = i64::from_le_bytes(body[12..20].try_into().unwrap_or_default());
    if base_offset < 0 || count == 0 {
        return Err(FrameError::Invalid(format!(
            "batch header has base offset {base_offset} and {count} records"
        )));
    }
    Ok(BatchView {
        base_offset,
        count,
        max_timestamp,
        records: &body[BODY_PREFIX_LEN..],
    })
}

/// Decodes every record of a checked batch, in offset order.
pub fn decode_records(batch: &BatchView<'_>) -> Result<Vec<(i64, Record)>, FrameError> {
    // The count is untrusted until every record has been read: bound the
    // allocation by what the bytes could possibly hold.
    const MIN_RECORD_LEN: usize = 8 + 8 + 4 + 4 + 2;
    let mut out =
        Vec::with_capacity((batch.count as usize).min(batch.records.len() / MIN_RECORD_LEN));
    let mut cur = Cursor { buf: batch.records };
    for i in 0..batch.count as i64 {
        let offset = batch.base_offset + i;
        let len = cur.u32()? as usize;
        let crc = cur.u32()?;
        let body = cur.take(len)?;
        if crc32c::crc32c(body) != crc {
            return Err(FrameError::Invalid(format!(
                "record CRC mismatch at offset {offset}"
            )));
        }
        let record = decode_record(body).map_err(|e| match e {
            FrameError::Incomplete => {
                FrameError::Invalid(format!("record at offset {offset} is truncated"))
            }
            other => other,
        })?;
        out.push((offset, record));
    }
    if !cur.buf.is_empty() {
        return Err(FrameError::Invalid(format!(
            "{} stray bytes after the last record of batch at offset {}",
            cur.buf.len(),
            batch.base_offset
        )));
    }
    Ok(out)
}

fn decode_record(body: &[u8]) -> Result<Record, FrameError> {
    let mut cur = Cursor { buf: body };
    let timestamp_ms = cur.i64()?;
    let key_len = cur.i32()?;
    let key = match key_len {
        -1 => None,
        n if n >= 0 => Some(cur.take(n as usize)?.to_vec()),
        n => return Err(FrameError::Invalid(format!("negative key length {n}"))),
    };
    let value_len = cur.u32()? as usize;
    let value = cur.take(value_len)?.to_vec();
    let header_count = cur.u16()?;
    let mut headers = Vec::with_capacity(header_count.min(64) as usize);
    for _ in 0..header_count {
        let klen = cur.u16()? as usize;
        let key = String::from_utf8(cur.take(klen)?.to_vec())
            .map_err(|_| FrameError::Invalid("header key is not UTF-8".into()))?;
        let vlen = cur.u32()? as usize;
        let value = cur.take(vlen)?.to_vec();
        headers.push(Header { key, value });
    }
    Ok(Record {
        key,
        value,
        headers,
        timestamp_ms,
    })
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Incomplete);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, FrameError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(i: u8) -> Record {
        Record {
            key: if i.is_multiple_of(2) {
                Some(vec![i; 3])
            } else {
                None
            },
            value: vec![i; i as usize],
            headers: vec![Header {
                key: "ig-tenant".into(),
                value: b"acme".to_vec(),
            }],
            timestamp_ms: 1_700_000_000_000 + i as i64,
        }
    }

    #[test]
    fn round_trips_a_batch() {
        let records: Vec<_> = (0..5).map(rec).collect();
        let mut buf = Vec::new();
        encode_batch(&mut buf, 42, &records);
        let view = open_batch(&buf).unwrap();
        assert_eq!(view.base_offset, 42);
        assert_eq!(view.next_offset(), 47);
        let decoded = decode_records(&view).unwrap();
        assert_eq!(
            decoded.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
            records
        );
    }

    #[test]
    fn reports_torn_batch_as_incomplete() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, 0, &[rec(9)]);
        for cut in 0..buf.len() {
            assert_eq!(
                open_batch(&buf[..cut]).unwrap_err(),
                FrameError::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn detects_flipped_bit_with_crc() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, 0, &[rec(9)]);
        let last = buf.len() - 1;
        buf[last] ^= 0x10;
        assert!(matches!(open_batch(&buf), Err(FrameError::Invalid(m)) if m.contains("CRC")));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(view) = open_batch(&bytes) {
                let _ = decode_records(&view);
            }
        }

        #[test]
        fn garbage_with_valid_crc_never_panics(body in proptest::collection::vec(any::<u8>(), 20..512)) {
            // Forge a frame whose CRC is right, so the record decoder sees the garbage.
            let mut buf = vec![BATCH_MAGIC];
            buf.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
            buf.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
            buf.extend_from_slice(&body);
            if let Ok(view) = open_batch(&buf) {
                let _ = decode_records(&view);
            }
        }
    }
}
