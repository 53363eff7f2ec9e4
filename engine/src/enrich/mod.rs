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
//! A stage may be **metered** ([`Enrichment::metering`], [`budget`]): each
//! input says what its call costs ([`Enrichment::units`], tokens for an
//! embedder, asked only of inputs not recorded yet); the
//! stage charges the asking event's tenant for its month, records the usage
//! as `UsageRecorded` on `ig.ingest.usage` (quota accounting folds it), and
//! under a limit announces `QuotaAlert` on `ig.quota.alerts` at 80 % and,
//! at 100 %, stops calling for that tenant until the month ends or the limit
//! is raised. A stopped input is not recorded: its fold keeps waiting for a
//! result, which a later event with the same content may bring.
//!
//! The one window that can repeat a call is a crash between the service's
//! answer and the commit that records it; requests carry the content hashes
//! (an HTTP enrichment sends them as `Idempotency-Key`), so a service that
//! deduplicates answers the repeat from its cache. Privacy: the recorded
//! event holds the hash and the answer, never the request.

pub mod budget;
mod join;
pub mod policy;

pub use budget::{Admission, Budget, Metering, Threshold};
pub use join::{EnrichedJoin, Recorded};
pub use policy::{CallPolicy, Pacer};

use crate::processor::{Effect, EmitEvent, Processor, ProcessorError, ProcessorState};
use crate::projection::TableSpec;
use async_trait::async_trait;
use conductor_schemas::{
    EnrichmentRecorded, Event, EventData, EventMetadata, QuotaAlert, UsageRecorded,
};
use futures::future::BoxFuture;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Where a metered stage records usage (quota accounting's input).
pub const USAGE_TOPIC: &str = "ig.ingest.usage";
/// Where a metered stage announces the 80 % and 100 % thresholds.
pub const QUOTA_ALERTS_TOPIC: &str = "ig.quota.alerts";

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

    /// How calls are metered and capped per tenant; `None`: not metered.
    fn metering(&self) -> Option<Metering> {
        None
    }

    /// What calling for `input` costs, in the [`Metering`] unit (tokens).
    /// Asked only of a metered stage, and only for inputs not recorded yet
    /// (a replay of recorded inputs costs nothing to price).
    fn units(&self, _input: &EnrichInput) -> u64 {
        0
    }
}

/// The recorded content hashes and what each tenant spent: the stage's
/// state.
#[derive(Debug, Default)]
struct RecordedHashes {
    hashes: BTreeSet<String>,
    budget: Budget,
    /// `prepare` ran for the batch being folded (a missing result is a bug);
    /// false after a restore or clear (a warm-up folds without results).
    live: bool,
}

impl ProcessorState for RecordedHashes {
    /// 2: the budget joined the hashes.
    fn format_version(&self) -> u32 {
        2
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&(&self.hashes, &self.budget)).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        (self.hashes, self.budget) = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a recorded-hashes snapshot: {e}"))?;
        self.live = false;
        Ok(())
    }

    fn clear(&mut self) {
        self.hashes.clear();
        self.budget.clear();
        self.live = false;
    }
}

/// The stage processor around an [`Enrichment`] (see the module doc).
pub struct EnrichStage<E: Enrichment> {
    /// The registered processor name (`embeddings_enrich`).
    processor_name: String,
    enrichment: Arc<E>,
    metering: Option<Arc<Metering>>,
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
            metering: enrichment.metering().map(Arc::new),
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
        let meta = self.derived_meta(cause, hash, "enr", &format!("{name}\n{hash}"));
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

    /// Charges `cause`'s tenant for one call: the usage record (and the 80 %
    /// alert) to emit, or `Err` with what to emit instead of calling (the
    /// 100 % alert the first time) when the tenant's budget is spent.
    fn charge(
        &mut self,
        metering: &Metering,
        cause: &Event,
        units: u64,
    ) -> Result<Vec<Effect>, Vec<Effect>> {
        let tenant = &cause.meta.tenant;
        let period = budget::period(cause.meta.occurred_at);
        match self.recorded.budget.admit(metering, tenant, &period, units) {
            Admission::Call { units, alert } => {
                let mut out = vec![emit(
                    USAGE_TOPIC.into(),
                    self.usage_event(metering, cause, units),
                )];
                if let Some(t) = alert {
                    tracing::warn!(tenant = %tenant, period = %period, used = t.used, limit = t.limit, unit = %metering.unit,
                        "{} reached 80 % of its {} budget", tenant, metering.usage_kind);
                    out.push(emit(
                        QUOTA_ALERTS_TOPIC.into(),
                        self.alert_event(metering, cause, &period, &t),
                    ));
                }
                Ok(out)
            }
            Admission::Stop { stopped } => {
                metrics::counter!(crate::metrics::ENRICHMENT_BUDGET_STOPS_TOTAL, "enrichment" => self.enrichment.name().to_string())
                    .increment(1);
                Err(stopped
                    .map(|t| {
                        tracing::warn!(tenant = %tenant, period = %period, used = t.used, limit = t.limit, unit = %metering.unit,
                            "{} spent its {} budget: no more calls for it until the period ends or the limit is raised", tenant, metering.usage_kind);
                        emit(
                            QUOTA_ALERTS_TOPIC.into(),
                            self.alert_event(metering, cause, &period, &t),
                        )
                    })
                    .into_iter()
                    .collect())
            }
        }
    }

    /// Metadata of an event the stage derives from `cause`, id'd by `parts`.
    fn derived_meta(
        &self,
        cause: &Event,
        subject: &str,
        prefix: &str,
        parts: &str,
    ) -> EventMetadata {
        let id = blake3::hash(parts.as_bytes()).to_hex();
        let mut meta = EventMetadata::new(&cause.meta.tenant, subject, cause.meta.occurred_at);
        meta.event_id = format!("{prefix}-{}", &id[..32]);
        meta.causation_id = Some(cause.meta.event_id.clone());
        meta.correlation_id = cause.meta.correlation_id.clone();
        meta.source = Some(format!("conductor/{}", self.processor_name));
        meta
    }

    fn usage_event(&self, metering: &Metering, cause: &Event, units: u64) -> Event {
        let meta = self.derived_meta(
            cause,
            &self.processor_name,
            "use",
            &format!("{}\nusage\n{}", self.processor_name, cause.meta.event_id),
        );
        Event::new(
            meta,
            EventData::UsageRecorded(UsageRecorded {
                usage_kind: metering.usage_kind.clone(),
                quantity: i64::try_from(units).unwrap_or(i64::MAX),
                unit: Some(metering.unit.clone()),
            }),
        )
    }

    fn alert_event(
        &self,
        metering: &Metering,
        cause: &Event,
        period: &str,
        t: &Threshold,
    ) -> Event {
        let meta = self.derived_meta(
            cause,
            &metering.usage_kind,
            "qa",
            &format!(
                "{}\n{}\n{period}\n{}",
                self.processor_name, cause.meta.tenant, t.percent
            ),
        );
        Event::new(
            meta,
            EventData::QuotaAlert(QuotaAlert {
                usage_kind: metering.usage_kind.clone(),
                period: period.to_string(),
                threshold_percent: t.percent as i32,
                used: i64::try_from(t.used).unwrap_or(i64::MAX),
                limit: i64::try_from(t.limit).unwrap_or(i64::MAX),
                unit: Some(metering.unit.clone()),
                action: if t.percent >= 100 { "stopped" } else { "alert" }.into(),
            }),
        )
    }

    async fn fetch(&mut self, events: &[&Event]) -> Result<(), ProcessorError> {
        let mut wanted = Vec::new();
        let mut seen = BTreeSet::new();
        // The fold will admit inputs in this order: ask the same questions
        // of a copy of the budget, so that exactly what it admits is called.
        let mut budget = self.recorded.budget.clone();
        for event in events {
            // A bad event is reported by `process`, which DLQs it.
            let Ok(Some(input)) = self.enrichment.input(event) else {
                continue;
            };
            if self.recorded.hashes.contains(&input.content_hash)
                || !seen.insert(input.content_hash.clone())
            {
                continue;
            }
            if let Some(m) = &self.metering {
                let p = budget::period(event.meta.occurred_at);
                if let Admission::Stop { .. } =
                    budget.admit(m, &event.meta.tenant, &p, self.enrichment.units(&input))
                {
                    continue;
                }
            }
            if !self.prepared.contains_key(&input.content_hash) {
                wanted.push(input);
            }
        }
        if !wanted.is_empty() {
            let answers = policy::call_all(self.enrichment.as_ref(), wanted, &self.pacer).await?;
            self.prepared.extend(answers);
        }
        self.recorded.live = true;
        Ok(())
    }
}

fn emit(topic: String, event: Event) -> Effect {
    Effect::Emit(Box::new(EmitEvent {
        topic,
        event,
        key: None,
    }))
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
        if self.recorded.hashes.contains(&input.content_hash) {
            return Ok(Vec::new());
        }
        let hash = input.content_hash.clone();
        let mut out = Vec::new();
        if let Some(m) = self.metering.clone() {
            let units = self.enrichment.units(&input);
            match self.charge(&m, event, units) {
                Ok(effects) => out = effects,
                Err(stopped) => return Ok(stopped),
            }
        }
        let outcome = match self.prepared.remove(&hash) {
            Some(outcome) => outcome,
            // A warm-up or a rebuild: recorded before, by the batch that
            // called for it. Only the state moves.
            None if !self.recorded.live => {
                self.recorded.hashes.insert(hash);
                return Ok(out);
            }
            None => {
                return Err(ProcessorError::internal(format!(
                    "no answer was prepared for content hash {hash}"
                )));
            }
        };
        let record = self.record(event, &hash, outcome);
        self.recorded.hashes.insert(hash);
        out.push(emit(results_topic(self.enrichment.name()), record));
        Ok(out)
    }

    /// The results topic exists before the fold that joins it starts.
    fn output_topics(&self) -> Vec<(String, i32)> {
        let mut topics = vec![(results_topic(self.enrichment.name()), 1)];
        if self.metering.is_some() {
            topics.push((USAGE_TOPIC.into(), 3));
            topics.push((QUOTA_ALERTS_TOPIC.into(), 1));
        }
        topics
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
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Answers the length of `text`; fails the first `fail_first` calls.
    #[derive(Default)]
    struct Length {
        calls: Mutex<Vec<usize>>,
        fail_first: usize,
        /// Metered, with this monthly limit (units: bytes of text).
        limit: Option<u64>,
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
        fn units(&self, input: &EnrichInput) -> u64 {
            input.request["text"].as_str().map_or(0, |t| t.len() as u64)
        }
        fn metering(&self) -> Option<Metering> {
            self.limit.map(|l| Metering {
                usage_kind: "length".into(),
                unit: "bytes".into(),
                default_limit: Some(l),
                tenant_limits: Default::default(),
            })
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
    fn a_metered_stage_meets_the_processor_contract() {
        crate::testing::check_processor_contract(
            || {
                EnrichStage::new(
                    "length_enrich",
                    Length {
                        limit: Some(20),
                        ..Default::default()
                    },
                )
            },
            &events(),
        );
    }

    #[tokio::test]
    async fn a_metered_stage_records_usage_alerts_at_80_percent_and_stops_at_100() {
        // Texts are `Some(Text("a"))`-like: 16 to 18 bytes; limit 40 admits two.
        let mut stage = EnrichStage::new(
            "length_enrich",
            Length {
                limit: Some(40),
                ..Default::default()
            },
        );
        let refs: Vec<Event> = events();
        let batch: Vec<&Event> = refs.iter().collect();
        stage.prepare(&batch).unwrap().await.unwrap();
        let mut by_topic: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for e in &refs {
            for effect in stage.process(e).unwrap() {
                let Effect::Emit(emit) = effect else {
                    panic!("a stage only emits")
                };
                by_topic.entry(emit.topic).or_default().push(emit.event);
            }
        }
        let calls: usize = stage.enrichment.calls.lock().unwrap().iter().sum();
        assert_eq!(calls, 2, "the third distinct text is over the limit");
        assert_eq!(by_topic[&results_topic("length")].len(), 2);
        let usage: Vec<i64> = by_topic[USAGE_TOPIC]
            .iter()
            .map(|e| match &e.data {
                EventData::UsageRecorded(u) => {
                    assert_eq!(
                        (u.usage_kind.as_str(), u.unit.as_deref()),
                        ("length", Some("bytes"))
                    );
                    u.quantity
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(usage.len(), 2, "one usage record a call");
        let alerts: Vec<(i32, String, i64)> = by_topic[QUOTA_ALERTS_TOPIC]
            .iter()
            .map(|e| match &e.data {
                EventData::QuotaAlert(a) => (a.threshold_percent, a.action.clone(), a.used),
                other => panic!("{other:?}"),
            })
            .collect();
        let used: i64 = usage.iter().sum();
        assert_eq!(
            alerts,
            vec![(80, "alert".into(), used), (100, "stopped".into(), used)],
            "each threshold once, with what was used"
        );
        assert_eq!(stage.recorded.budget.used("acme", "2026-02") as i64, used);
        assert!(
            !stage.recorded.hashes.contains(
                &stage
                    .enrichment
                    .input(&refs[3])
                    .unwrap()
                    .unwrap()
                    .content_hash
            ),
            "a stopped input is not recorded: a later month may call it"
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
