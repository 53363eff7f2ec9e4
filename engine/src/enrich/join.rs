//! The fold side of an enrichment: source events joined with the stage's
//! recorded results by content hash.
//!
//! The fold reads both topics; either side of a pair may come first. An
//! event whose result is recorded is resolved at once; one whose result is
//! not is parked until the `EnrichmentRecorded` arrives. Folds that key
//! their rows by version (the usual case) don't care which comes first: a
//! parked older version resolved late loses to the newer one by the version
//! guard. The results topic is read whole, like a Kafka Streams
//! GlobalKTable: the results are not partitioned like the events, so when
//! topologies scale out each worker of the fold reads every partition of it.

use crate::processor::ProcessorError;
use conductor_schemas::EnrichmentRecorded;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// A recorded answer, decoded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Recorded<R> {
    Result(R),
    /// The service refused the input (the reason, never the input).
    Refused(String),
}

/// Recorded results (`R`, decoded from the result's JSON) and the items
/// (`T`, whatever the fold needs to finish an event) waiting for theirs.
/// Keep it in the fold's state: [`snapshot`](Self::snapshot) /
/// [`restore`](Self::restore) give it to the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichedJoin<R, T> {
    results: BTreeMap<String, Recorded<R>>,
    waiting: BTreeMap<String, Vec<T>>,
}

impl<R, T> Default for EnrichedJoin<R, T> {
    fn default() -> Self {
        EnrichedJoin {
            results: BTreeMap::new(),
            waiting: BTreeMap::new(),
        }
    }
}

impl<R, T> EnrichedJoin<R, T>
where
    R: Serialize + DeserializeOwned + Clone,
    T: Serialize + DeserializeOwned,
{
    /// Books a recorded result; returns it with the items that waited for it.
    /// A result that doesn't decode as `R` is the stage's bug: internal.
    pub fn record(
        &mut self,
        data: &EnrichmentRecorded,
    ) -> Result<(Recorded<R>, Vec<T>), ProcessorError> {
        let recorded = match (&data.result, &data.error) {
            (Some(text), _) => Recorded::Result(serde_json::from_str(text).map_err(|e| {
                ProcessorError::internal(format!(
                    "result {} of enrichment {} does not decode: {e}",
                    data.content_hash, data.enrichment
                ))
            })?),
            (None, Some(why)) => Recorded::Refused(why.clone()),
            (None, None) => Recorded::Refused("the service gave no result".into()),
        };
        self.results
            .insert(data.content_hash.clone(), recorded.clone());
        let waiting = self.waiting.remove(&data.content_hash).unwrap_or_default();
        Ok((recorded, waiting))
    }

    /// The recorded result for `hash`, if it is recorded.
    pub fn result(&self, hash: &str) -> Option<&Recorded<R>> {
        self.results.get(hash)
    }

    /// Parks `item` until the result for `hash` is recorded ([`record`](Self::record)
    /// hands it back).
    pub fn wait_for(&mut self, hash: &str, item: T) {
        self.waiting.entry(hash.to_string()).or_default().push(item);
    }

    /// Items waiting for a result, over all hashes.
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(Vec::len).sum()
    }

    /// Recorded results held.
    pub fn results(&self) -> usize {
        self.results.len()
    }

    /// Deterministic bytes (sorted maps).
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&(&self.results, &self.waiting)).unwrap_or_default()
    }

    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (results, waiting) =
            serde_json::from_slice(bytes).map_err(|e| format!("not a join snapshot: {e}"))?;
        self.results = results;
        self.waiting = waiting;
        Ok(())
    }

    pub fn clear(&mut self) {
        self.results.clear();
        self.waiting.clear();
    }
}
