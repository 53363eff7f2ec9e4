//! How an enrichment stage calls its service: batches of distinct inputs,
//! a bounded number in flight, paced by a token bucket that every call
//! shares and that a `Retry-After` pauses, each retried with jittered
//! exponential backoff up to a number of attempts. Past those, the batch
//! fails as `ProcessorError::external`, which the worker retries later.

use super::{CallError, EnrichInput, Enrichment, InputOutcome};
use crate::metrics as m;
use crate::processor::ProcessorError;
use futures::{StreamExt, TryStreamExt};
use governor::{DefaultDirectRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Batching, concurrency, pacing and retries of an enrichment's calls.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallPolicy {
    /// Inputs per call.
    pub max_batch: usize,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Calls started per second, all together (0: no limit).
    pub requests_per_second: f64,
    /// Attempts per call before the batch fails (and the worker retries it later).
    pub max_attempts: u32,
    /// First backoff between attempts; doubles up to `backoff_cap_ms`.
    pub backoff_first_ms: u64,
    pub backoff_cap_ms: u64,
    /// How long one call may take.
    pub timeout_ms: u64,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            max_batch: 32,
            max_concurrency: 4,
            requests_per_second: 50.0,
            max_attempts: 6,
            backoff_first_ms: 100,
            backoff_cap_ms: 10_000,
            timeout_ms: 30_000,
        }
    }
}

impl CallPolicy {
    /// What is wrong with it, if anything (for config checks).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_batch == 0 {
            out.push("max_batch must be at least 1".into());
        }
        if self.max_concurrency == 0 {
            out.push("max_concurrency must be at least 1".into());
        }
        if !(self.requests_per_second >= 0.0 && self.requests_per_second.is_finite()) {
            out.push("requests_per_second must be 0 (no limit) or more".into());
        }
        if self.max_attempts == 0 {
            out.push("max_attempts must be at least 1".into());
        }
        if self.timeout_ms == 0 {
            out.push("timeout_ms must be at least 1".into());
        }
        out
    }
}

/// Paces the calls of one stage: a token bucket, and a pause every call
/// waits out after the service said `Retry-After` (or rate-limited without
/// saying how long).
pub struct Pacer {
    bucket: Option<DefaultDirectRateLimiter>,
    paused_until: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(policy: &CallPolicy) -> Self {
        let bucket = (policy.requests_per_second > 0.0).then(|| {
            let period = Duration::from_secs_f64(1.0 / policy.requests_per_second);
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::MIN);
            governor::RateLimiter::direct(quota)
        });
        Pacer {
            bucket,
            paused_until: Mutex::new(None),
        }
    }

    /// Waits until a call may start: no pause in force, and a token. A pause
    /// that began while this call waited for its token is waited out too.
    pub async fn ready(&self) {
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = until.filter(|t| *t > Instant::now()) {
                tokio::time::sleep_until(t.into()).await;
                continue;
            }
            if let Some(bucket) = &self.bucket {
                bucket.until_ready().await;
            }
            let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            if until.is_none_or(|t| t <= Instant::now()) {
                return;
            }
        }
    }

    /// Holds every call back for `delay` (extends, never shortens, a pause).
    pub fn pause_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|t| t < until) {
            *paused = Some(until);
        }
    }
}

/// Calls the service for every input (distinct content hashes); returns each
/// hash with its outcome, or the external error that ended the retries.
pub async fn call_all<E: Enrichment + ?Sized>(
    enrichment: &E,
    inputs: Vec<EnrichInput>,
    pacer: &Pacer,
) -> Result<Vec<(String, InputOutcome)>, ProcessorError> {
    let policy = enrichment.policy();
    let labels = [("enrichment", enrichment.name().to_string())];
    metrics::counter!(m::ENRICHMENT_INPUTS_TOTAL, &labels).increment(inputs.len() as u64);
    let chunks: Vec<Vec<EnrichInput>> = inputs
        .chunks(policy.max_batch.max(1))
        .map(<[EnrichInput]>::to_vec)
        .collect();
    let answered: Vec<Vec<(String, InputOutcome)>> = futures::stream::iter(chunks)
        .map(|chunk| call_with_retries(enrichment, chunk, &policy, pacer))
        .buffer_unordered(policy.max_concurrency.max(1))
        .try_collect()
        .await?;
    Ok(answered.into_iter().flatten().collect())
}

/// The backoff before attempt `attempt + 1`: doubling from the first delay
/// up to the cap, plus up to a quarter of jitter (from the chunk's first
/// hash, so concurrent chunks spread out without a random source).
fn backoff(policy: &CallPolicy, attempt: u32, seed: &str) -> Duration {
    let base = policy
        .backoff_first_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
        .min(policy.backoff_cap_ms.max(policy.backoff_first_ms));
    let spread = blake3::hash(format!("{seed}/{attempt}").as_bytes()).as_bytes()[0] as u64;
    Duration::from_millis(base + base * spread / 1024)
}

async fn call_with_retries<E: Enrichment + ?Sized>(
    enrichment: &E,
    chunk: Vec<EnrichInput>,
    policy: &CallPolicy,
    pacer: &Pacer,
) -> Result<Vec<(String, InputOutcome)>, ProcessorError> {
    let name = enrichment.name().to_string();
    let seed = chunk
        .first()
        .map_or("", |i| i.content_hash.as_str())
        .to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        pacer.ready().await;
        let started = Instant::now();
        metrics::counter!(m::ENRICHMENT_CALLS_TOTAL, "enrichment" => name.clone()).increment(1);
        let timeout = Duration::from_millis(policy.timeout_ms.max(1));
        let error = match tokio::time::timeout(timeout, enrichment.call(&chunk)).await {
            Ok(Ok(outcomes)) if outcomes.len() == chunk.len() => {
                metrics::histogram!(m::ENRICHMENT_CALL_DURATION_SECONDS, "enrichment" => name.clone())
                    .record(started.elapsed().as_secs_f64());
                return Ok(chunk
                    .into_iter()
                    .map(|i| i.content_hash)
                    .zip(outcomes)
                    .collect());
            }
            Ok(Ok(outcomes)) => CallError::Unavailable(format!(
                "the service answered {} outcomes for {} inputs",
                outcomes.len(),
                chunk.len()
            )),
            Ok(Err(e)) => e,
            Err(_) => CallError::Unavailable(format!("no answer within {} ms", policy.timeout_ms)),
        };
        let kind = match error {
            CallError::RateLimited { .. } => "rate_limited",
            CallError::Unavailable(_) => "unavailable",
        };
        metrics::counter!(m::ENRICHMENT_CALL_ERRORS_TOTAL, "enrichment" => name.clone(), "kind" => kind)
            .increment(1);
        if attempt >= policy.max_attempts.max(1) {
            return Err(ProcessorError::external(
                enrichment.dependency(),
                format!("{error} (gave up after {attempt} attempts)"),
            ));
        }
        let delay = match &error {
            CallError::RateLimited {
                retry_after: Some(d),
            } => *d,
            _ => backoff(policy, attempt, &seed),
        };
        if matches!(error, CallError::RateLimited { .. }) {
            // The service speaks for every call: they all wait.
            pacer.pause_for(delay);
        } else {
            tokio::time::sleep(delay).await;
        }
        tracing::debug!(enrichment = %name, attempt, error = %error, retry_in_ms = delay.as_millis() as u64, "enrichment call failed; retrying");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let policy = CallPolicy {
            backoff_first_ms: 100,
            backoff_cap_ms: 1_000,
            ..Default::default()
        };
        let ms = |a| backoff(&policy, a, "h").as_millis() as u64;
        assert!((100..=125).contains(&ms(1)), "{}", ms(1));
        assert!((200..=250).contains(&ms(2)), "{}", ms(2));
        assert!((1_000..=1_250).contains(&ms(9)), "{}", ms(9));
    }

    #[tokio::test]
    async fn a_pause_holds_every_call_back_until_it_ends() {
        let pacer = Pacer::new(&CallPolicy {
            requests_per_second: 0.0,
            ..Default::default()
        });
        pacer.pause_for(Duration::from_millis(150));
        pacer.pause_for(Duration::from_millis(10)); // never shortens it
        let started = Instant::now();
        pacer.ready().await;
        assert!(started.elapsed() >= Duration::from_millis(140));
    }

    #[test]
    fn names_every_bad_setting() {
        let bad = CallPolicy {
            max_batch: 0,
            max_concurrency: 0,
            requests_per_second: -1.0,
            max_attempts: 0,
            timeout_ms: 0,
            ..Default::default()
        };
        assert_eq!(bad.problems().len(), 5);
        assert!(CallPolicy::default().problems().is_empty());
    }
}
