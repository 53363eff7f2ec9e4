//! The vector index's snapshot: the HNSW graphs as hnsw_rs dumps them, so a
//! restart loads the graph instead of inserting every vector again.
//!
//! Layout: a little-endian `u32` header length, the JSON [`Header`], then
//! for each index its `.hnsw.graph` and `.hnsw.data` bytes, lengths in the
//! header. hnsw_rs reads and writes dumps as files, so they pass through a
//! private temporary directory.

use super::ann::{AnnIndex, AnnParams, Graph, Slot};
use hnsw_rs::prelude::{AnnT, DistCosine, HnswIo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Serialize, Deserialize)]
pub struct Header {
    /// The HNSW parameters the graphs were built with.
    pub params: String,
    pub indexes: Vec<IndexHeader>,
}

#[derive(Serialize, Deserialize)]
pub struct IndexHeader {
    pub tenant: String,
    pub model: String,
    pub dims: usize,
    pub slots: Vec<Slot>,
    pub dead: usize,
    /// Bytes of the graph and data dumps; 0: an empty graph.
    pub graph_len: usize,
    pub data_len: usize,
}

const BASENAME: &str = "index";

/// (tenant, model).
pub type IndexKey = (String, String);

fn io_error(what: &str, e: impl std::fmt::Display) -> String {
    format!("vector index snapshot: {what}: {e}")
}

/// One graph as (graph bytes, data bytes); empty for a graph with no point.
fn dump(graph: &Graph) -> Result<(Vec<u8>, Vec<u8>), String> {
    if graph.get_nb_point() == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let dir = tempfile::tempdir().map_err(|e| io_error("temporary directory", e))?;
    let name = graph
        .file_dump(dir.path(), BASENAME)
        .map_err(|e| io_error("dump", e))?;
    let read = |ext: &str| {
        std::fs::read(dir.path().join(format!("{name}.hnsw.{ext}")))
            .map_err(|e| io_error("read dump", e))
    };
    Ok((read("graph")?, read("data")?))
}

fn load(graph: &[u8], data: &[u8]) -> Result<Graph, String> {
    let dir = tempfile::tempdir().map_err(|e| io_error("temporary directory", e))?;
    let write = |ext: &str, bytes: &[u8]| {
        std::fs::write(dir.path().join(format!("{BASENAME}.hnsw.{ext}")), bytes)
            .map_err(|e| io_error("write dump", e))
    };
    write("graph", graph)?;
    write("data", data)?;
    // The loaded graph borrows its loader for its whole life (for memory
    // maps, which are off here: the data is copied in). Restores are rare
    // (start, failed batch), so the small loader is leaked, not unsafely
    // detached.
    let io: &'static HnswIo = Box::leak(Box::new(HnswIo::new(dir.path(), BASENAME)));
    io.load_hnsw_with_dist(DistCosine)
        .map_err(|e| io_error("load", e))
}

/// Encodes `indexes` (in key order).
pub fn encode<'a>(
    params: &str,
    indexes: impl Iterator<Item = (&'a (String, String), &'a AnnIndex)>,
) -> Result<Vec<u8>, String> {
    let mut header = Header {
        params: params.to_string(),
        indexes: Vec::new(),
    };
    let mut blobs = Vec::new();
    for ((tenant, model), idx) in indexes {
        let (graph, data) = dump(&idx.graph)?;
        header.indexes.push(IndexHeader {
            tenant: tenant.clone(),
            model: model.clone(),
            dims: idx.dims,
            slots: idx.slots.clone(),
            dead: idx.dead,
            graph_len: graph.len(),
            data_len: data.len(),
        });
        blobs.push(graph);
        blobs.push(data);
    }
    let head = serde_json::to_vec(&header).map_err(|e| io_error("header", e))?;
    let mut out = Vec::with_capacity(4 + head.len() + blobs.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    for b in blobs {
        out.extend_from_slice(&b);
    }
    Ok(out)
}

/// Decodes a snapshot made with `params`.
pub fn decode(
    bytes: &[u8],
    params: &str,
    ann: AnnParams,
) -> Result<Vec<(IndexKey, AnnIndex)>, String> {
    let short = || "vector index snapshot: truncated".to_string();
    let len = u32::from_le_bytes(
        bytes
            .get(..4)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    ) as usize;
    let header: Header = serde_json::from_slice(bytes.get(4..4 + len).ok_or_else(short)?)
        .map_err(|e| io_error("header", e))?;
    if header.params != params {
        return Err("the snapshot's graphs were built with other HNSW parameters".into());
    }
    let mut at = 4 + len;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = bytes.get(at..at + n).ok_or_else(short)?;
        at += n;
        Ok(s)
    };
    let mut out = Vec::with_capacity(header.indexes.len());
    for h in header.indexes {
        let graph_bytes = take(h.graph_len)?;
        let data_bytes = take(h.data_len)?;
        let graph = if h.graph_len == 0 {
            super::ann::new_graph(&ann, 1024)
        } else {
            load(graph_bytes, data_bytes)?
        };
        let live: HashMap<String, u32> = h
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live)
            .map(|(i, s)| (s.entity_id.clone(), i as u32))
            .collect();
        out.push((
            (h.tenant, h.model),
            AnnIndex {
                params: ann,
                dims: h.dims,
                graph,
                slots: h.slots,
                live,
                dead: h.dead,
            },
        ));
    }
    Ok(out)
}
