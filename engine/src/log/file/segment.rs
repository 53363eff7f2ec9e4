//! One segment file of a partition plus its sparse index.
//!
//! A segment `NNNNNNNNNNNNNNNNNNNN.log` holds batches whose offsets start at
//! the base offset in its name. Its `.index` file holds an entry every
//! `index_interval_bytes`: (batch base offset, file position, max timestamp of
//! everything before that position). The index serves both offset and
//! timestamp lookups; it is a hint, rebuilt from the log when missing or
//! inconsistent, so it is never fsynced.

use super::codec::{self, FrameError};
use crate::log::LogError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One sparse index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: i64,
    pub position: u64,
    /// Max timestamp of all batches *before* `position`.
    pub max_ts_before: i64,
}

const INDEX_ENTRY_LEN: usize = 24;

pub struct Segment {
    pub base_offset: i64,
    pub path: PathBuf,
    file: File,
    index_file: Option<File>,
    /// Bytes of valid batches; anything after is not (yet) part of the log.
    pub valid_len: u64,
    /// Offset after the last valid batch.
    pub next_offset: i64,
    /// Max timestamp of all valid batches (`i64::MIN` when empty).
    pub max_timestamp: i64,
    pub index: Vec<IndexEntry>,
    bytes_since_index: u64,
    index_interval_bytes: u64,
}

pub fn segment_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

/// Base offset of a segment from its file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<i64> {
    name.strip_suffix(".log")?.parse().ok()
}

/// What a scan found.
pub struct ScanOutcome {
    /// Bytes after the last valid batch that were not valid (torn or corrupt).
    pub invalid_tail: u64,
    pub detail: Option<String>,
}

impl Segment {
    /// Creates an empty segment file (the directory is fsynced by the caller).
    pub fn create(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
    ) -> Result<Self, LogError> {
        let path = dir.join(segment_file_name(base_offset));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::write_failed("create", &path, e))?;
        let index_path = path.with_extension("index");
        let index_file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&index_path)
            .map_err(|e| LogError::write_failed("create", &index_path, e))?;
        Ok(Segment {
            base_offset,
            path,
            file,
            index_file: Some(index_file),
            valid_len: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            index: Vec::new(),
            bytes_since_index: 0,
            index_interval_bytes,
        })
    }

    /// Opens an existing segment and finds its valid extent.
    ///
    /// `writable` segments get their index rewritten from the scan; read-only
    /// openers never modify files.
    pub fn open(
        path: PathBuf,
        base_offset: i64,
        index_interval_bytes: u64,
        writable: bool,
    ) -> Result<(Self, ScanOutcome), LogError> {
        let file = OpenOptions::new()
            .read(true)
            .append(writable)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        let mut seg = Segment {
            base_offset,
            path,
            file,
            index_file: None,
            valid_len: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            index: Vec::new(),
            bytes_since_index: 0,
            index_interval_bytes,
        };
        let outcome = seg.scan_forward()?;
        if writable {
            seg.rewrite_index()?;
        }
        Ok((seg, outcome))
    }

    /// Extends `valid_len` over every complete, valid batch after it.
    /// Used at open (recovery) and by read-only openers to see new data.
    pub fn scan_forward(&mut self) -> Result<ScanOutcome, LogError> {
        let file_len = self
            .file
            .metadata()
            .map_err(|e| LogError::io(&self.path, e))?
            .len();
        let mut pos = self.valid_len;
        let mut header = [0u8; codec::BATCH_HEADER_LEN];
        let mut buf = Vec::new();
        while pos < file_len {
            if file_len - pos < header.len() as u64 {
                return Ok(self.invalid_tail(file_len, pos, "incomplete batch header".into()));
            }
            self.read_exact_at(&mut header, pos)?;
            let h = match codec::parse_header(&header) {
                Ok(h) => h,
                Err(FrameError::Incomplete) => {
                    return Ok(self.invalid_tail(file_len, pos, "incomplete batch header".into()));
                }
                Err(FrameError::Invalid(d)) => return Ok(self.invalid_tail(file_len, pos, d)),
            };
            if pos + h.total_len as u64 > file_len {
                return Ok(self.invalid_tail(file_len, pos, "incomplete batch".into()));
            }
            buf.resize(h.total_len, 0);
            self.read_exact_at(&mut buf, pos)?;
            let view = match codec::open_batch(&buf) {
                Ok(v) => v,
                Err(FrameError::Incomplete) => {
                    return Ok(self.invalid_tail(file_len, pos, "incomplete batch".into()));
                }
                Err(FrameError::Invalid(d)) => return Ok(self.invalid_tail(file_len, pos, d)),
            };
            if view.base_offset != self.next_offset {
                let d = format!(
                    "batch offset {} where {} was expected",
                    view.base_offset, self.next_offset
                );
                return Ok(self.invalid_tail(file_len, pos, d));
            }
            let (next, max_ts) = (view.next_offset(), view.max_timestamp);
            self.note_batch(pos, h.total_len as u64, next, max_ts, false)?;
            pos += h.total_len as u64;
        }
        Ok(ScanOutcome {
            invalid_tail: 0,
            detail: None,
        })
    }

    fn invalid_tail(&self, file_len: u64, pos: u64, detail: String) -> ScanOutcome {
        ScanOutcome {
            invalid_tail: file_len - pos,
            detail: Some(format!("{} at byte {pos}: {detail}", self.path.display())),
        }
    }

    /// Records a batch that now lives at `position` (already written).
    fn note_batch(
        &mut self,
        position: u64,
        len: u64,
        next_offset: i64,
        max_ts: i64,
        write_index: bool,
    ) -> Result<(), LogError> {
        if self.index.is_empty() || self.bytes_since_index >= self.index_interval_bytes {
            let entry = IndexEntry {
                offset: self.next_offset,
                position,
                max_ts_before: self.max_timestamp,
            };
            self.index.push(entry);
            self.bytes_since_index = 0;
            if write_index {
                self.append_index_entry(entry);
            }
        }
        self.bytes_since_index += len;
        self.valid_len = position + len;
        self.next_offset = next_offset;
        self.max_timestamp = self.max_timestamp.max(max_ts);
        Ok(())
    }

    /// Appends to the index file. The index is a hint (the in-memory index
    /// serves this process; a reopen without a usable file rebuilds it from
    /// the segment), so a failed write never fails the append that the
    /// segment already holds: the file is given up and removed instead.
    fn append_index_entry(&mut self, e: IndexEntry) {
        let Some(f) = self.index_file.as_mut() else {
            return;
        };
        let mut b = [0u8; INDEX_ENTRY_LEN];
        b[0..8].copy_from_slice(&e.offset.to_le_bytes());
        b[8..16].copy_from_slice(&e.position.to_le_bytes());
        b[16..24].copy_from_slice(&e.max_ts_before.to_le_bytes());
        if let Err(error) = f.write_all(&b) {
            let index_path = self.path.with_extension("index");
            tracing::warn!(path = %index_path.display(), %error, "index write failed; the index is rebuilt from the segment on the next open");
            self.index_file = None;
            let _ = std::fs::remove_file(&index_path);
        }
    }

    fn rewrite_index(&mut self) -> Result<(), LogError> {
        let index_path = self.path.with_extension("index");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&index_path)
            .map_err(|e| LogError::io(&index_path, e))?;
        let mut bytes = Vec::with_capacity(self.index.len() * INDEX_ENTRY_LEN);
        for e in &self.index {
            bytes.extend_from_slice(&e.offset.to_le_bytes());
            bytes.extend_from_slice(&e.position.to_le_bytes());
            bytes.extend_from_slice(&e.max_ts_before.to_le_bytes());
        }
        f.write_all(&bytes)
            .map_err(|e| LogError::io(&index_path, e))?;
        self.index_file = Some(f);
        Ok(())
    }

    /// Cuts the file back to its valid extent (recovery after a crash).
    pub fn truncate_to_valid(&mut self) -> Result<(), LogError> {
        self.file
            .set_len(self.valid_len)
            .map_err(|e| LogError::io(&self.path, e))?;
        self.file
            .sync_all()
            .map_err(|e| LogError::io(&self.path, e))
    }

    /// Appends an encoded batch (one `write`), updating index and extent.
    pub fn append_batch(
        &mut self,
        bytes: &[u8],
        next_offset: i64,
        max_ts: i64,
    ) -> Result<(), LogError> {
        let position = self.valid_len;
        if let Err(e) = self.file.write_all(bytes) {
            // Part of the batch may have landed: cut it off, so that what the
            // file holds past the acknowledged records is nothing.
            let _ = self.file.set_len(position);
            return Err(LogError::write_failed("write to", &self.path, e));
        }
        self.note_batch(position, bytes.len() as u64, next_offset, max_ts, true)
    }

    /// fsyncs the segment; on failure what follows `cut_to` (the length the
    /// last fsync made durable), if given, is cut off the file, best effort:
    /// it was never acknowledged, and the page cache may have dropped it.
    pub fn sync(&self, cut_to: Option<u64>) -> Result<(), LogError> {
        self.file.sync_data().map_err(|e| {
            if let Some(len) = cut_to {
                let _ = self.file.set_len(len);
            }
            LogError::write_failed("fsync", &self.path, e)
        })
    }

    pub fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> Result<(), LogError> {
        self.file
            .read_exact_at(buf, pos)
            .map_err(|e| LogError::io(&self.path, e))
    }

    /// File position from which to scan for `offset`.
    pub fn position_for_offset(&self, offset: i64) -> u64 {
        let i = self.index.partition_point(|e| e.offset <= offset);
        if i == 0 {
            0
        } else {
            self.index[i - 1].position
        }
    }

    /// File position from which to scan for the first record with timestamp >= `ts`.
    pub fn position_for_timestamp(&self, ts: i64) -> u64 {
        // max_ts_before is non-decreasing: skip every region entirely older than ts.
        let i = self.index.partition_point(|e| e.max_ts_before < ts);
        if i == 0 {
            0
        } else {
            self.index[i - 1].position
        }
    }

    pub fn remove_files(&self) -> Result<(), LogError> {
        std::fs::remove_file(&self.path).map_err(|e| LogError::io(&self.path, e))?;
        let _ = std::fs::remove_file(self.path.with_extension("index"));
        Ok(())
    }
}
