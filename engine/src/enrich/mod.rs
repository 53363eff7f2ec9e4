//! External calls outside the fold: the enrichment stage.
//!
//! A fold is deterministic and does no I/O, so a processor that needs a
//! service (an embedder over HTTP) splits in two topologies chained by a topic:
//!
//! ```text
//! ig.ingest.entities ─▶ [stage: EnrichStage<E>] ─▶ ig.enriched.<name> ─┐
//!        │                 calls the service only for content          ├─▶ [fold: EnrichedJoin] ─▶ rows
//!        └──────────────── hashes it has not recorded ────────────────┘
//! ```
//!
//! - The **stage** ([`EnrichStage`]) asks its [`Enrichment`] what each event
//!   needs (a content hash — blake3 of everything the answer depends on — and
//!   a request). Before the batch's fold, in [`Processor::prepare`], it calls
//!   the service for the hashes it has not recorded yet: batched, with
//!   bounded concurrency, paced by a rate limiter that honours `Retry-After`,
//!   retried with backoff ([`policy`]). The fold then records each new
//!   result as one `EnrichmentRecorded` event on `ig.enriched.<name>`, in
//!   the batch's transaction. The set of recorded hashes is the stage's
//!   state (snapshotted like any processor state), so a restart does not
//!   call again for what was stored, and a warm-up or a rebuild — which never
//!   run `prepare` — calls nothing at all.
//! - The **fold** consumes the source topic and the results topic and joins
//!   them by content hash ([`EnrichedJoin`]): a replay or a rebuild of the
//!   fold reads recorded results and never calls.
//! - A service that is down, refusing or rate-limiting past the retries is
//!   `ProcessorError::external(dependency, …)`: the batch is retried with
//!   backoff and `topology status` names the service; never a DLQ, never a
//!   halt. A service that refuses one *input* (it is too long, say) answers
//!   [`InputOutcome::Refused`]: that is recorded too (the fold decides — a
//!   DLQ entry, a skipped row) and never asked again.
//!
//! The one window that can repeat a call is a crash between the service's
//! answer and the commit that records it; requests carry the content hashes
//! (an HTTP enrichment sends them as `Idempotency-Key`), so a service that
//! deduplicates answers the repeat from its cache. Privacy: the recorded
//! event holds the hash and the answer, never the request.

mod join;
pub mod policy;

pub use join::{EnrichedJoin, Recorded};
pub use policy::{CallPolicy, Pacer};

use crate::processor::{Effect, EmitEvent, Processor, ProcessorError, ProcessorState};
use crate::projection::TableSpec;
use async_trait::async_trait;
use conductor_schemas::{EnrichmentRecorded, Event, EventData, EventMetadata};
use futures::future::BoxFuture;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The topic an enrichment stage records its results on.
pub fn results_topic(enrichment: &str) -> String {
    format!("ig.enriched.{enrichment}")
}

/// What one event needs from the service.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichInput {
    /// blake3 of everything the answer depends on (input, model, version),
    /// hex; names the result on the results topic.
    pub content_hash: String,
    /// What the service is sent (may hold raw text: it is never recorded,
    /// logged or put in an error message).
    pub request: serde_json::Value,
}

/// The service's answer for one input.
#[derive(Debug, Clone, PartialEq)]
pub enum InputOutcome {
    Result(serde_json::Value),
    /// The service refused this input for good (too long, unsupported);
    /// the reason must not quote the input.
    Refused(String),
}

/// Why a call for a batch of inputs failed as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// 429 / 503 with or without `Retry-After`: pause every call, then retry.
    #[error("rate limited by the service (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// Down, timed out, a 5xx, a bad answer: retry with backoff.
    #[error("{0}")]
    Unavailable(String),
}

/// The service side of an enrichment stage.
#[async_trait]
pub trait Enrichment: Send + Sync + 'static {
    /// The stage's name (`embeddings`): its results topic is
    /// `ig.enriched.<name>` and its records say `enrichment: <name>`.
    fn name(&self) -> &str;

    /// What `event` needs from the service, if anything. Deterministic, no
    /// I/O. An error is the event's fault (`invalid_input`: DLQ'd).
    fn input(&self, event: &Event) -> Result<Option<EnrichInput>, ProcessorError>;

    /// The service, as `topology status` shows what it waits on
    /// (`shout http://127.0.0.1:8080`); never a secret.
    fn dependency(&self) -> String;

    /// One call for distinct inputs; one outcome per input, in order.
    async fn call(&self, inputs: &[EnrichInput]) -> Result<Vec<InputOutcome>, CallError>;

    /// Batching, concurrency, pacing and retries of the calls.
    fn policy(&self) -> CallPolicy {
        CallPolicy::default()
    }
}

/// The recorded content hashes: the stage's state.
#[derive(Debug, Default)]
struct RecordedHashes {
    hashes: BTreeSet<String>,
    /// `prepare` ran for the batch being folded (a missing result is a bug);
    /// false after a restore or clear (a warm-up folds without results).
    live: bool,
}

impl ProcessorState for RecordedHashes {
    fn format_version(&self) -> u32 {
        1
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.hashes).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.hashes = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a recorded-hashes snapshot: {e}"))?;
        self.live = false;
        Ok(())
    }

    fn clear(&mut self) {
        self.hashes.clear();
        self.live = false;
    }
}

/// The stage processor around an [`Enrichment`] (see the module doc).
pub struct EnrichStage<E: Enrichment> {
    /// The registered processor name (`embeddings_enrich`).
    processor_name: String,
    enrichment: Arc<E>,
    recorded: RecordedHashes,
    /// Answers fetched by `prepare`, waiting for the fold to record them;
    /// kept across a failed commit, so its retry calls nothing again.
    prepared: HashMap<String, InputOutcome>,
    pacer: Arc<Pacer>,
}

impl<E: Enrichment> EnrichStage<E> {
    pub fn new(processor_name: impl Into<String>, enrichment: E) -> Self {
        let pacer = Arc::new(Pacer::new(&enrichment.policy()));
        EnrichStage {
            processor_name: processor_name.into(),
            enrichment: Arc::new(enrichment),
            recorded: RecordedHashes::default(),
            prepared: HashMap::new(),
            pacer,
        }
    }

    /// The event that records `outcome` for `input`, caused by `cause`.
    fn record(&self, cause: &Event, hash: &str, outcome: InputOutcome) -> Event {
        let name = self.enrichment.name();
        let (result, error) = match outcome {
            InputOutcome::Result(v) => (Some(v.to_string()), None),
            InputOutcome::Refused(why) => (None, Some(why)),
        };
        let id = blake3::hash(format!("{name}\n{hash}").as_bytes()).to_hex();
        let mut meta = EventMetadata::new(&cause.meta.tenant, hash, cause.meta.occurred_at);
        meta.event_id = format!("enr-{}", &id[..32]);
        meta.causation_id = Some(cause.meta.event_id.clone());
        meta.correlation_id = cause.meta.correlation_id.clone();
        meta.source = Some(format!("conductor/{}", self.processor_name));
        Event::new(
            meta,
            EventData::EnrichmentRecorded(EnrichmentRecorded {
                enrichment: name.to_string(),
                content_hash: hash.to_string(),
                result,
                error,
            }),
        )
    }

    async fn fetch(&mut self, events: &[&Event]) -> Result<(), ProcessorError> {
        let mut wanted = Vec::new();
        let mut seen = BTreeSet::new();
        for event in events {
            // A bad event is reported by `process`, which DLQs it.
            let Ok(Some(input)) = self.enrichment.input(event) else {
                continue;
            };
            if self.recorded.hashes.contains(&input.content_hash)
                || self.prepared.contains_key(&input.content_hash)
                || !seen.insert(input.content_hash.clone())
            {
                continue;
            }
            wanted.push(input);
        }
        if !wanted.is_empty() {
            let answers = policy::call_all(self.enrichment.as_ref(), wanted, &self.pacer).await?;
            self.prepared.extend(answers);
        }
        self.recorded.live = true;
        Ok(())
    }
}

impl<E: Enrichment> Processor for EnrichStage<E> {
    fn name(&self) -> &str {
        &self.processor_name
    }

    /// The stage writes no table: its output is the results topic.
    fn tables(&self) -> Vec<TableSpec> {
        Vec::new()
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        let Some(input) = self.enrichment.input(event)? else {
            return Ok(Vec::new());
        };
        let hash = input.content_hash;
        if self.recorded.hashes.contains(&hash) {
            return Ok(Vec::new());
        }
        let outcome = match self.prepared.remove(&hash) {
            Some(outcome) => outcome,
            // A warm-up or a rebuild: recorded before, by the batch that
            // called for it. Only the state moves.
            None if !self.recorded.live => {
                self.recorded.hashes.insert(hash);
                return Ok(Vec::new());
            }
            None => {
                return Err(ProcessorError::internal(format!(
                    "no answer was prepared for content hash {hash}"
                )));
            }
        };
        let record = self.record(event, &hash, outcome);
        self.recorded.hashes.insert(hash);
        Ok(vec![Effect::Emit(Box::new(EmitEvent {
            topic: results_topic(self.enrichment.name()),
            event: record,
            key: None,
        }))])
    }

    /// The results topic exists before the fold that joins it starts.
    fn output_topics(&self) -> Vec<(String, i32)> {
        vec![(results_topic(self.enrichment.name()), 1)]
    }

    fn state(&mut self) -> Option<&mut dyn ProcessorState> {
        // Answers for hashes a warm-up found recorded are not needed any more.
        if !self.prepared.is_empty() && !self.recorded.live {
            let recorded = &self.recorded.hashes;
            self.prepared.retain(|h, _| !recorded.contains(h));
        }
        Some(&mut self.recorded)
    }

    fn prepare<'a>(
        &'a mut self,
        events: &'a [&'a Event],
    ) -> Option<BoxFuture<'a, Result<(), ProcessorError>>> {
        Some(Box::pin(self.fetch(events)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::ProcessorErrorKind;
    use std::sync::Mutex;

    /// Answers the length of `text`; fails the first `fail_first` calls.
    #[derive(Default)]
    struct Length {
        calls: Mutex<Vec<usize>>,
        fail_first: usize,
    }

    #[async_trait]
    impl Enrichment for Length {
        fn name(&self) -> &str {
            "length"
        }
        fn input(&self, event: &Event) -> Result<Option<EnrichInput>, ProcessorError> {
            let EventData::EntityUpserted(e) = &event.data else {
                return Ok(None);
            };
            let text = format!("{:?}", e.attributes.get("text"));
            Ok(Some(EnrichInput {
                content_hash: blake3::hash(text.as_bytes()).to_hex().to_string(),
                request: serde_json::json!({ "text": text }),
            }))
        }
        fn dependency(&self) -> String {
            "length service".into()
        }
        fn policy(&self) -> CallPolicy {
            CallPolicy {
                max_batch: 2,
                max_attempts: 2,
                backoff_first_ms: 1,
                requests_per_second: 0.0,
                ..Default::default()
            }
        }
        async fn call(&self, inputs: &[EnrichInput]) -> Result<Vec<InputOutcome>, CallError> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(inputs.len());
            if calls.len() <= self.fail_first {
                return Err(CallError::Unavailable("down".into()));
            }
            Ok(inputs
                .iter()
                .map(|i| InputOutcome::Result(i.request["text"].as_str().unwrap().len().into()))
                .collect())
        }
    }

    fn events() -> Vec<Event> {
        ["a", "bb", "a", "ccc", "bb"]
            .iter()
            .enumerate()
            .map(|(i, t)| {
                conductor_schemas::codec::decode_json(
                    format!(r#"{{"tenant":"acme","kind":"EntityUpserted","subject":"s{i}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"Person","version":1,"attributes":{{"text":"{t}"}}}}}}"#).as_bytes(),
                    None,
                )
                .unwrap()
            })
            .collect()
    }

    async fn live_batch(
        stage: &mut EnrichStage<Length>,
        events: &[Event],
    ) -> Result<usize, ProcessorError> {
        let refs: Vec<&Event> = events.iter().collect();
        stage.prepare(&refs).unwrap().await?;
        let mut emitted = 0;
        for e in events {
            emitted += stage.process(e)?.len();
        }
        Ok(emitted)
    }

    #[test]
    fn a_stage_meets_the_processor_contract() {
        crate::testing::check_processor_contract(
            || EnrichStage::new("length_enrich", Length::default()),
            &events(),
        );
    }

    #[tokio::test]
    async fn calls_once_per_distinct_input_and_records_each_once() {
        let mut stage = EnrichStage::new("length_enrich", Length::default());
        let emitted = live_batch(&mut stage, &events()).await.unwrap();
        assert_eq!(emitted, 3, "one record per distinct text");
        assert_eq!(
            *stage.enrichment.calls.lock().unwrap(),
            vec![2, 1],
            "3 inputs in batches of 2"
        );
        assert_eq!(
            live_batch(&mut stage, &events()).await.unwrap(),
            0,
            "recorded: nothing again"
        );
        assert_eq!(
            stage.enrichment.calls.lock().unwrap().len(),
            2,
            "no call for recorded inputs"
        );
    }

    #[tokio::test]
    async fn a_service_down_past_the_attempts_is_an_external_error_and_the_retry_calls_once() {
        let mut stage = EnrichStage::new(
            "length_enrich",
            Length {
                fail_first: 2,
                ..Default::default()
            },
        );
        let e = &events()[..1];
        let err = live_batch(&mut stage, e).await.unwrap_err();
        assert_eq!(err.kind, ProcessorErrorKind::External);
        assert_eq!(err.dependency.as_deref(), Some("length service"));
        assert!(err.message.contains("gave up after 2 attempts"), "{err}");
        assert_eq!(
            live_batch(&mut stage, e).await.unwrap(),
            1,
            "the worker's retry succeeds"
        );
    }

    #[test]
    fn a_warm_up_records_without_results_and_a_live_fold_without_one_is_a_bug() {
        let mut stage = EnrichStage::new("length_enrich", Length::default());
        let e = events();
        assert!(
            stage.process(&e[0]).unwrap().is_empty(),
            "warm-up: no record, no call"
        );
        assert!(
            stage.state().unwrap().snapshot().len() > 2,
            "but the hash is recorded"
        );
        stage.recorded.live = true;
        let err = stage.process(&e[1]).unwrap_err();
        assert_eq!(err.kind, ProcessorErrorKind::Internal);
    }
}
