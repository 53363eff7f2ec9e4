//! One partition: an ordered list of segments, the last one active.

use super::codec::{self, FrameError};
use super::segment::{Segment, parse_segment_file_name};
use super::{FileLogOptions, FsyncPolicy};
use crate::log::{LogError, Record, StoredRecord, TopicConfig, now_ms};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct PartitionLog {
    pub topic: String,
    pub partition: i32,
    dir: PathBuf,
    /// Non-empty; ordered by base offset; the last one takes appends.
    segments: Vec<Segment>,
    options: FileLogOptions,
    writable: bool,
    last_sync: Instant,
    dirty: bool,
    /// Length of the active segment that the last fsync made durable.
    synced_len: u64,
    encode_buf: Vec<u8>,
}

impl PartitionLog {
    /// Opens (or creates) the partition directory. A writable open recovers:
    /// it truncates a torn tail of the last segment.
    pub fn open(
        topic: &str,
        partition: i32,
        dir: PathBuf,
        options: &FileLogOptions,
        writable: bool,
    ) -> Result<Self, LogError> {
        if writable {
            std::fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        }
        let mut bases = list_segment_bases(&dir)?;
        bases.sort_unstable();
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let count = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let path = dir.join(super::segment::segment_file_name(base));
            let (mut seg, outcome) =
                Segment::open(path, base, options.index_interval_bytes, writable)?;
            if outcome.invalid_tail > 0 {
                let detail = outcome.detail.unwrap_or_default();
                if i + 1 < count {
                    // A sealed segment was fsynced before the next one was
                    // created, so damage there is corruption, not a torn write.
                    return Err(LogError::Corrupt {
                        location: format!("{topic}[{partition}]"),
                        detail,
                    });
                }
                if writable {
                    tracing::warn!(topic, partition, bytes = outcome.invalid_tail, detail = %detail,
                        "truncating torn tail of the log after an unclean shutdown");
                    seg.truncate_to_valid()?;
                }
            }
            segments.push(seg);
        }
        let mut p = PartitionLog {
            topic: topic.to_string(),
            partition,
            dir,
            segments,
            options: options.clone(),
            writable,
            last_sync: Instant::now(),
            dirty: false,
            synced_len: 0,
            encode_buf: Vec::new(),
        };
        p.synced_len = p.segments.last().map_or(0, |s| s.valid_len);
        if p.segments.is_empty() {
            if !writable {
                return Err(LogError::Corrupt {
                    location: format!("{topic}[{partition}]"),
                    detail: format!("no segment files in {}", p.dir.display()),
                });
            }
            p.roll(0)?;
        }
        Ok(p)
    }

    pub fn low_watermark(&self) -> i64 {
        self.segments.first().map_or(0, |s| s.base_offset)
    }

    pub fn high_watermark(&self) -> i64 {
        self.segments.last().map_or(0, |s| s.next_offset)
    }

    fn active(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Appends a batch; returns its first offset. Durable per the fsync policy.
    pub fn append(&mut self, records: &[Record], config: &TopicConfig) -> Result<i64, LogError> {
        let base = self.high_watermark();
        let mut buf = std::mem::take(&mut self.encode_buf);
        buf.clear();
        codec::encode_batch(&mut buf, base, records);
        let max_ts = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
        let res = self.write_batch(&buf, base + records.len() as i64, max_ts, config, true);
        self.encode_buf = buf;
        res.map(|_| base)
    }

    /// Appends an already encoded batch whose base offset must be the high
    /// watermark. `sync` false skips the fsync policy (the caller has made the
    /// bytes durable elsewhere, e.g. in the transaction journal).
    pub fn append_encoded(
        &mut self,
        batch: &[u8],
        config: &TopicConfig,
        sync: bool,
    ) -> Result<(), LogError> {
        debug_assert!(self.writable);
        let view = codec::open_batch(batch).map_err(|e| LogError::Corrupt {
            location: format!("{}[{}] batch to append", self.topic, self.partition),
            detail: frame_detail(e),
        })?;
        if view.base_offset != self.high_watermark() {
            return Err(LogError::Corrupt {
                location: format!("{}[{}]", self.topic, self.partition),
                detail: format!(
                    "batch for offset {} does not follow the high watermark {}",
                    view.base_offset,
                    self.high_watermark()
                ),
            });
        }
        self.write_batch(batch, view.next_offset(), view.max_timestamp, config, sync)
    }

    /// Writes a checked, encoded batch to the active segment (rolling first if full).
    fn write_batch(
        &mut self,
        batch: &[u8],
        next: i64,
        max_ts: i64,
        config: &TopicConfig,
        sync: bool,
    ) -> Result<(), LogError> {
        if self.active().valid_len >= self.options.segment_bytes {
            let base = self.high_watermark();
            self.roll(base)?;
            self.enforce_retention(config)?;
        }
        self.active().append_batch(batch, next, max_ts)?;
        self.dirty = true;
        if sync {
            self.maybe_sync()?;
        }
        Ok(())
    }

    fn maybe_sync(&mut self) -> Result<(), LogError> {
        match self.options.fsync {
            FsyncPolicy::EveryBatch => self.sync(),
            FsyncPolicy::IntervalMs(ms) if self.last_sync.elapsed().as_millis() as u64 >= ms => {
                self.sync()
            }
            _ => Ok(()),
        }
    }

    /// Forces written data to disk. When fsync fails under `every_batch`,
    /// what it was to make durable was never acknowledged and is cut off the
    /// segment (under `interval:<ms>` the appends since the last fsync were
    /// acknowledged already and stay).
    pub fn sync(&mut self) -> Result<(), LogError> {
        if self.dirty {
            let cut_to =
                matches!(self.options.fsync, FsyncPolicy::EveryBatch).then_some(self.synced_len);
            self.active().sync(cut_to)?;
            self.dirty = false;
            self.synced_len = self.active().valid_len;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    fn roll(&mut self, base: i64) -> Result<(), LogError> {
        if !self.segments.is_empty() {
            // Seal the old segment durably before its successor exists, so
            // recovery only ever needs to repair the last segment.
            self.sync()?;
        }
        let seg = Segment::create(&self.dir, base, self.options.index_interval_bytes)?;
        sync_dir(&self.dir)?;
        self.segments.push(seg);
        self.synced_len = 0;
        Ok(())
    }

    /// Deletes sealed segments that are past retention (by age or size).
    pub fn enforce_retention(&mut self, config: &TopicConfig) -> Result<usize, LogError> {
        let mut removed = 0;
        let now = now_ms();
        loop {
            if self.segments.len() < 2 {
                break;
            }
            let oldest = &self.segments[0];
            let too_old = config.retention_ms.is_some_and(|ms| {
                oldest.max_timestamp != i64::MIN && oldest.max_timestamp < now - ms
            });
            let total: u64 = self.segments.iter().map(|s| s.valid_len).sum();
            let too_big = config.retention_bytes.is_some_and(|b| total > b);
            if !(too_old || too_big) {
                break;
            }
            self.segments[0].remove_files()?;
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Read-only openers: pick up segments and batches written by the writer process.
    pub fn refresh(&mut self) -> Result<(), LogError> {
        if self.writable {
            return Ok(());
        }
        let mut bases = list_segment_bases(&self.dir)?;
        bases.sort_unstable();
        self.segments.retain(|s| bases.contains(&s.base_offset));
        for base in bases {
            if self.segments.iter().all(|s| s.base_offset != base) {
                let path = self.dir.join(super::segment::segment_file_name(base));
                let (seg, _) = Segment::open(path, base, self.options.index_interval_bytes, false)?;
                self.segments.push(seg);
            }
        }
        self.segments.sort_by_key(|s| s.base_offset);
        if let Some(last) = self.segments.last_mut() {
            last.scan_forward()?;
        }
        Ok(())
    }

    /// Reads up to `max` records from `from`.
    pub fn read(&self, from: i64, max: usize) -> Result<Vec<StoredRecord>, LogError> {
        let (low, high) = (self.low_watermark(), self.high_watermark());
        if from < low || from > high {
            return Err(LogError::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.partition,
                requested: from,
                low,
                high,
            });
        }
        let mut out = Vec::new();
        let first_seg = self
            .segments
            .partition_point(|s| s.base_offset <= from)
            .saturating_sub(1);
        for seg in &self.segments[first_seg..] {
            if out.len() >= max {
                break;
            }
            let start = seg.position_for_offset(from);
            self.scan_segment(seg, start, |offset, _batch_max_ts, rec| {
                if offset >= from {
                    out.push(StoredRecord {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        offset,
                        record: rec,
                    });
                }
                out.len() < max
            })?;
        }
        Ok(out)
    }

    /// First offset with timestamp >= `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<i64>, LogError> {
        for seg in &self.segments {
            if seg.max_timestamp < ts {
                continue;
            }
            let mut found = None;
            self.scan_segment(seg, seg.position_for_timestamp(ts), |offset, _, rec| {
                if rec.timestamp_ms >= ts {
                    found = Some(offset);
                    return false;
                }
                true
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Calls `visit(offset, batch_max_ts, record)` for records from file
    /// position `start` until it returns false or the valid extent ends.
    fn scan_segment(
        &self,
        seg: &Segment,
        start: u64,
        mut visit: impl FnMut(i64, i64, Record) -> bool,
    ) -> Result<(), LogError> {
        thread_local! {
            // Reused across reads: batches can be megabytes, and a fresh
            // zeroed buffer per read costs more than decoding it.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|buf| {
            let mut pos = start;
            let mut header = [0u8; codec::BATCH_HEADER_LEN];
            let corrupt = |pos: u64, detail: String| LogError::Corrupt {
                location: format!(
                    "{}[{}] {} byte {pos}",
                    self.topic,
                    self.partition,
                    seg.path.display()
                ),
                detail,
            };
            while pos < seg.valid_len {
                seg.read_exact_at(&mut header, pos)?;
                let h = codec::parse_header(&header).map_err(|e| corrupt(pos, frame_detail(e)))?;
                if pos + h.total_len as u64 > seg.valid_len {
                    return Err(corrupt(
                        pos,
                        "batch runs past the end of the valid log".into(),
                    ));
                }
                if buf.len() < h.total_len {
                    buf.resize(h.total_len, 0);
                }
                let bytes = &mut buf[..h.total_len];
                seg.read_exact_at(bytes, pos)?;
                let view = codec::open_batch(bytes).map_err(|e| corrupt(pos, frame_detail(e)))?;
                let max_ts = view.max_timestamp;
                for (offset, rec) in
                    codec::decode_records(&view).map_err(|e| corrupt(pos, frame_detail(e)))?
                {
                    if !visit(offset, max_ts, rec) {
                        return Ok(());
                    }
                }
                pos += h.total_len as u64;
            }
            Ok(())
        })
    }
}

fn frame_detail(e: FrameError) -> String {
    match e {
        FrameError::Incomplete => "truncated batch".into(),
        FrameError::Invalid(d) => d,
    }
}

fn list_segment_bases(dir: &Path) -> Result<Vec<i64>, LogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io(dir, e)),
    };
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            bases.push(base);
        }
    }
    Ok(bases)
}

/// fsyncs a directory so that new or removed entries survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::write_failed("fsync", dir, e))
}
