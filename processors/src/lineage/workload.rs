//! A deterministic OpenLineage workload, for the crash test and the
//! benchmarks: runs of jobs chained through datasets (job `j` reads
//! `d{j}` and `d{j/2}`, writes `d{j+1}`, so lineage goes as deep as there
//! are jobs), in three tenants, with what real producers do — RUNNING
//! heartbeats, a FAIL now and then (with its error message), a terminal
//! event sent before the START, a client's retry of the same event — and a
//! column-lineage facet on every output.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

/// One event: its tenant and its OpenLineage JSON.
pub struct WorkloadEvent {
    pub tenant: &'static str,
    pub event: Value,
}

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const PRODUCER: &str = "https://github.com/conductor/processors/src/lineage/workload.rs";
const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

fn dataset(j: usize, field_lineage_from: Option<usize>) -> Value {
    let mut d = json!({"namespace": "postgres://warehouse:5432", "name": format!("public.d{j}")});
    if let Some(input) = field_lineage_from {
        d["facets"] = json!({"columnLineage": {
            "_producer": PRODUCER,
            "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
            "fields": {
                "id": {"inputFields": [{"namespace": "postgres://warehouse:5432", "name": format!("public.d{input}"), "field": "id",
                    "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}]}]},
                "total": {"inputFields": [{"namespace": "postgres://warehouse:5432", "name": format!("public.d{input}"), "field": "amount",
                    "transformations": [{"type": "DIRECT", "subtype": "AGGREGATION"}]}]}
            }
        }});
    }
    d
}

/// `jobs` jobs; events for runs until there are at least `events`.
pub fn generate(events: usize, jobs: usize) -> Vec<WorkloadEvent> {
    let jobs = jobs.max(1);
    let base: DateTime<Utc> = "2026-02-01T00:00:00Z".parse().unwrap_or_default();
    let mut out = Vec::with_capacity(events + 8);
    let mut run = 0usize;
    while out.len() < events {
        let job = run % jobs;
        let tenant = TENANTS[(run / jobs) % TENANTS.len()];
        let run_id = format!("{:08x}-0000-4000-8000-{:012x}", job, run);
        let at = |s: i64| {
            (base + Duration::seconds(run as i64 * 10 + s))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let event = |kind: &str, s: i64, io: bool| {
            let mut e = json!({
                "eventType": kind,
                "eventTime": at(s),
                "producer": PRODUCER,
                "schemaURL": SCHEMA_URL,
                "run": {"runId": run_id},
                "job": {"namespace": "etl", "name": format!("job_{job}")},
            });
            if io {
                e["inputs"] = json!([dataset(job, None), dataset(job / 2, None)]);
                e["outputs"] = json!([dataset(job + 1, Some(job))]);
            }
            e
        };
        let failed = run % 10 == 9;
        let mut terminal = event(if failed { "FAIL" } else { "COMPLETE" }, 3, true);
        if failed {
            terminal["run"]["facets"] = json!({"errorMessage": {
                "_producer": PRODUCER,
                "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json",
                "message": format!("job_{job} failed"), "programmingLanguage": "rust"}});
        }
        let mut run_events = vec![
            event("START", 0, false),
            event("RUNNING", 1, true),
            event("RUNNING", 2, true),
            terminal.clone(),
        ];
        if run % 7 == 3 {
            // The terminal event first: the START must not reopen the run.
            run_events.rotate_right(1);
        }
        if run % 11 == 5 {
            run_events.push(terminal); // a client's retry
        }
        out.extend(
            run_events
                .into_iter()
                .map(|event| WorkloadEvent { tenant, event }),
        );
        run += 1;
    }
    out
}

/// The events as JSON lines in Conductor's envelope (what `conductor
/// produce` appends).
pub fn envelope_lines(events: &[WorkloadEvent]) -> String {
    let mut out = String::new();
    for e in events {
        if let Ok(event) = conductor_schemas::openlineage::to_event(&e.event, e.tenant) {
            out.push_str(&String::from_utf8_lossy(
                &conductor_schemas::codec::encode_json(&event),
            ));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_valid_and_the_workload_is_deterministic() {
        let a = generate(500, 20);
        assert!(a.len() >= 500);
        for e in &a {
            conductor_schemas::openlineage::parse(&e.event).unwrap();
        }
        assert_eq!(envelope_lines(&a), envelope_lines(&generate(500, 20)));
        assert_eq!(envelope_lines(&a).lines().count(), a.len());
    }
}
