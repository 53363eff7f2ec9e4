//! The transaction journal: the write-ahead log that makes a
//! read-process-write commit atomic across partitions.
//!
//! A commit writes ONE journal entry — the outputs, already encoded as the
//! exact batches each partition will receive, plus the consumer positions —
//! and fsyncs it. Only then are the batches appended to their partitions.
//! Recovery replays every entry: a batch whose offsets a partition already
//! holds is skipped, one it lacks is appended. So after a crash at any point
//! either the whole transaction is visible (entry complete) or none of it
//! (entry torn, and no partition was touched before the entry was durable).
//!
//! The journal also holds writer epochs (fencing) and is the store of
//! committed positions; when it grows past a limit it is compacted into a
//! snapshot entry.
//!
//! ```text
//! entry := len:u32 | crc:u32 | kind:u8 | meta_len:u32 | meta (JSON) | batches
//! ```

use crate::log::LogError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const KIND_FENCE: u8 = 1;
pub const KIND_TXN: u8 = 2;
pub const KIND_SNAPSHOT: u8 = 3;

/// group → topic → partition → next offset.
pub type Positions = BTreeMap<String, BTreeMap<String, BTreeMap<i32, i64>>>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JournalState {
    pub epochs: BTreeMap<String, u64>,
    pub positions: Positions,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FenceMeta {
    pub writer_id: String,
    pub epoch: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TxnMeta {
    pub writer_id: String,
    pub epoch: u64,
    pub group: String,
    /// (topic, partition, next_offset)
    pub positions: Vec<(String, i32, i64)>,
    /// (topic, partition, batch byte length), in the order the batches follow.
    pub batches: Vec<(String, i32, u32)>,
}

/// A decoded entry.
pub struct Entry {
    pub kind: u8,
    pub meta: Vec<u8>,
    pub payload: Vec<u8>,
}

pub struct Journal {
    pub path: PathBuf,
    file: File,
    pub len: u64,
    pub state: JournalState,
}

impl Journal {
    pub fn path_in(root: &Path) -> PathBuf {
        root.join("txn").join("journal.log")
    }

    /// Opens (creating if needed) for writing and truncates a torn tail.
    /// Returns the journal and every TXN entry, for the caller to replay.
    pub fn open(root: &Path) -> Result<(Self, Vec<Entry>), LogError> {
        let path = Self::path_in(root);
        let dir = path.parent().unwrap_or(root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        let (entries, valid_len) = read_entries(&path)?;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        let actual = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        if actual > valid_len {
            tracing::warn!(path = %path.display(), bytes = actual - valid_len,
                "truncating torn tail of the transaction journal after an unclean shutdown");
            file.set_len(valid_len)
                .map_err(|e| LogError::io(&path, e))?;
            file.sync_all().map_err(|e| LogError::io(&path, e))?;
        }
        let mut state = JournalState::default();
        let mut txns = Vec::new();
        for e in entries {
            apply_to_state(&mut state, &e)?;
            if e.kind == KIND_TXN {
                txns.push(e);
            }
        }
        Ok((
            Journal {
                path,
                file,
                len: valid_len,
                state,
            },
            txns,
        ))
    }

    /// Reads the state without opening for write (read-only openers).
    pub fn read_state(root: &Path) -> Result<JournalState, LogError> {
        let (entries, _) = read_entries(&Self::path_in(root))?;
        let mut state = JournalState::default();
        for e in &entries {
            apply_to_state(&mut state, e)?;
        }
        Ok(state)
    }

    /// Appends one entry durably and folds it into the state.
    pub fn append(&mut self, kind: u8, meta: &[u8], payload: &[u8]) -> Result<(), LogError> {
        let bytes = encode_entry(kind, meta, payload);
        // The fsync is the commit point. A failed write or fsync leaves the
        // entry uncommitted: it is cut off (best effort) so that a restart's
        // replay doesn't complete a commit nobody was told about.
        let written = self
            .file
            .write_all(&bytes)
            .map_err(|e| LogError::write_failed("write to", &self.path, e))
            .and_then(|()| {
                self.file
                    .sync_data()
                    .map_err(|e| LogError::write_failed("fsync", &self.path, e))
            });
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += bytes.len() as u64;
        let entry = Entry {
            kind,
            meta: meta.to_vec(),
            payload: Vec::new(),
        };
        apply_to_state(&mut self.state, &entry)
    }

    /// Replaces the journal by one snapshot entry. The caller must have made
    /// every partition durable first (the snapshot drops the batches).
    pub fn compact(&mut self) -> Result<(), LogError> {
        let tmp = self.path.with_extension("tmp");
        let meta = serde_json::to_vec(&self.state)
            .map_err(|e| LogError::InvalidArgument(e.to_string()))?;
        let bytes = encode_entry(KIND_SNAPSHOT, &meta, &[]);
        let mut f = File::create(&tmp).map_err(|e| LogError::write_failed("create", &tmp, e))?;
        f.write_all(&bytes)
            .map_err(|e| LogError::write_failed("write to", &tmp, e))?;
        f.sync_all()
            .map_err(|e| LogError::write_failed("fsync", &tmp, e))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| LogError::write_failed("rename onto", &self.path, e))?;
        if let Some(dir) = self.path.parent() {
            super::partition::sync_dir(dir)?;
        }
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| LogError::write_failed("open", &self.path, e))?;
        self.len = bytes.len() as u64;
        Ok(())
    }
}

fn encode_entry(kind: u8, meta: &[u8], payload: &[u8]) -> Vec<u8> {
    let body_len = 1 + 4 + meta.len() + payload.len();
    let mut out = Vec::with_capacity(8 + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Every complete, valid entry and the byte length they cover.
fn read_entries(path: &Path) -> Result<(Vec<Entry>, u64), LogError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|e| LogError::io(path, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(LogError::io(path, e)),
    }
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= 8 {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
        if len < 5 || bytes.len() - pos - 8 < len {
            break;
        }
        let body = &bytes[pos + 8..pos + 8 + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        let meta_len = u32::from_le_bytes(body[1..5].try_into().unwrap_or_default()) as usize;
        if 5 + meta_len > body.len() {
            break;
        }
        entries.push(Entry {
            kind: body[0],
            meta: body[5..5 + meta_len].to_vec(),
            payload: body[5 + meta_len..].to_vec(),
        });
        pos += 8 + len;
    }
    Ok((entries, pos as u64))
}

fn corrupt(detail: String) -> LogError {
    LogError::Corrupt {
        location: "transaction journal".into(),
        detail,
    }
}

fn apply_to_state(state: &mut JournalState, e: &Entry) -> Result<(), LogError> {
    match e.kind {
        KIND_FENCE => {
            let m: FenceMeta =
                serde_json::from_slice(&e.meta).map_err(|err| corrupt(err.to_string()))?;
            let cur = state.epochs.entry(m.writer_id).or_insert(0);
            *cur = (*cur).max(m.epoch);
        }
        KIND_TXN => {
            let m: TxnMeta =
                serde_json::from_slice(&e.meta).map_err(|err| corrupt(err.to_string()))?;
            let group = state.positions.entry(m.group).or_default();
            for (topic, partition, next) in m.positions {
                group.entry(topic).or_default().insert(partition, next);
            }
        }
        KIND_SNAPSHOT => {
            *state = serde_json::from_slice(&e.meta).map_err(|err| corrupt(err.to_string()))?;
        }
        k => return Err(corrupt(format!("unknown entry kind {k}"))),
    }
    Ok(())
}
