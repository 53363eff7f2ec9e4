//! OpenLineage events (spec 2-0-2): what `openlineage-python`, Airflow,
//! Spark and dbt send — a RunEvent, DatasetEvent or JobEvent as JSON.
//!
//! [`parse`] checks an event against the spec's JSON schema
//! (`https://openlineage.io/spec/2-0-2/OpenLineage.json`: required fields,
//! types, `date-time` and `uuid` formats, the eventType enum, every facet a
//! `BaseFacet` with `_producer` and `_schemaURL`, and the column-lineage
//! facet's shape) and names the field at fault (`run.runId`,
//! `outputs[0].facets.columnLineage.fields.total.inputFields`). Unknown fields
//! and facets are kept: the spec is open for extension.
//!
//! [`to_event`] wraps one in Conductor's envelope (kind `OpenLineageEvent`,
//! the event's JSON text as its data), so `ig.ingest.runs` can hold plain
//! OpenLineage JSON from any Kafka client while the runtime folds envelopes.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use crate::error::{ErrorKind, SchemaError};
use crate::types::{Event, EventData, EventMetadata, OpenLineageEvent, RunEventType};

/// The spec this module checks against.
pub const SPEC_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json";

/// Facets by name (`schema`, `columnLineage`, `parent`, …) as sent.
pub type Facets = Map<String, Json>;

/// A checked OpenLineage event.
#[derive(Debug, Clone, PartialEq)]
pub enum LineageEvent {
    /// A run changed state.
    Run(LineageRun),
    /// Metadata about a dataset, outside any run.
    Dataset(LineageDatasetEvent),
    /// Metadata about a job (its inputs and outputs), outside any run.
    Job(LineageJobEvent),
}

/// `RunEvent`.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageRun {
    /// START, RUNNING, COMPLETE, ABORT, FAIL or OTHER; absent means OTHER's
    /// "no transition" in the spec (a metadata update to the run).
    pub event_type: Option<RunEventType>,
    /// When the transition happened.
    pub event_time: DateTime<Utc>,
    /// Who sent it (a URI).
    pub producer: String,
    /// `run.runId` (a UUID).
    pub run_id: String,
    /// `run.facets`.
    pub run_facets: Facets,
    /// The job.
    pub job: LineageJob,
    /// Datasets read.
    pub inputs: Vec<LineageDataset>,
    /// Datasets written.
    pub outputs: Vec<LineageDataset>,
}

/// `DatasetEvent`.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageDatasetEvent {
    /// When.
    pub event_time: DateTime<Utc>,
    /// Who sent it.
    pub producer: String,
    /// The dataset.
    pub dataset: LineageDataset,
}

/// `JobEvent`.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageJobEvent {
    /// When.
    pub event_time: DateTime<Utc>,
    /// Who sent it.
    pub producer: String,
    /// The job.
    pub job: LineageJob,
    /// Datasets read.
    pub inputs: Vec<LineageDataset>,
    /// Datasets written.
    pub outputs: Vec<LineageDataset>,
}

/// A job: `namespace` + `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageJob {
    /// Namespace (`conductor`, `airflow-prod`, …).
    pub namespace: String,
    /// Name within the namespace.
    pub name: String,
    /// `job.facets`.
    pub facets: Facets,
}

/// A dataset: `namespace` + `name`, with its facets (and the input or output
/// facets of the run that read or wrote it).
#[derive(Debug, Clone, PartialEq)]
pub struct LineageDataset {
    /// Namespace (`postgres://host:5432`, `kafka://broker`, …).
    pub namespace: String,
    /// Name within the namespace.
    pub name: String,
    /// `facets`.
    pub facets: Facets,
    /// `inputFacets` or `outputFacets`.
    pub io_facets: Facets,
}

/// One output field's lineage from the `columnLineage` facet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnLineage {
    /// The output field.
    pub field: String,
    /// The input fields it is computed from.
    pub inputs: Vec<InputField>,
}

/// An input field of a [`ColumnLineage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputField {
    /// The input dataset's namespace.
    pub namespace: String,
    /// The input dataset's name.
    pub name: String,
    /// The input field.
    pub field: String,
    /// `DIRECT` / `INDIRECT` (or the facet's older `transformationType`,
    /// `IDENTITY` / `MASKED`); empty when not given.
    pub transformation_type: String,
    /// `IDENTITY`, `TRANSFORMATION`, `AGGREGATION`, `FILTER`, … ; empty when
    /// not given.
    pub transformation_subtype: String,
}

impl LineageDataset {
    /// The `columnLineage` facet's fields, sorted by output field (already
    /// checked by [`parse`]; a dataset without the facet has none).
    pub fn column_lineage(&self) -> Vec<ColumnLineage> {
        let Some(Json::Object(fields)) = self
            .facets
            .get("columnLineage")
            .and_then(|facet| facet.get("fields"))
        else {
            return Vec::new();
        };
        let mut out: Vec<ColumnLineage> = fields
            .iter()
            .map(|(field, lineage)| {
                let old_type = str_at(lineage, "transformationType");
                let inputs = lineage
                    .get("inputFields")
                    .and_then(Json::as_array)
                    .map(|inputs| {
                        inputs
                            .iter()
                            .flat_map(|input| input_fields(input, old_type))
                            .collect()
                    })
                    .unwrap_or_default();
                ColumnLineage {
                    field: field.clone(),
                    inputs,
                }
            })
            .collect();
        out.sort_by(|a, b| a.field.cmp(&b.field));
        out
    }
}

/// An input field once per transformation it names (once when it names none).
fn input_fields(input: &Json, old_type: &str) -> Vec<InputField> {
    let field = |t: &str, s: &str| InputField {
        namespace: str_at(input, "namespace").to_string(),
        name: str_at(input, "name").to_string(),
        field: str_at(input, "field").to_string(),
        transformation_type: t.to_string(),
        transformation_subtype: s.to_string(),
    };
    match input.get("transformations").and_then(Json::as_array) {
        Some(ts) if !ts.is_empty() => ts
            .iter()
            .map(|t| field(str_at(t, "type"), str_at(t, "subtype")))
            .collect(),
        _ => vec![field(old_type, "")],
    }
}

fn str_at<'a>(json: &'a Json, key: &str) -> &'a str {
    json.get(key).and_then(Json::as_str).unwrap_or_default()
}

impl LineageEvent {
    /// When it happened.
    pub fn event_time(&self) -> DateTime<Utc> {
        match self {
            LineageEvent::Run(r) => r.event_time,
            LineageEvent::Dataset(d) => d.event_time,
            LineageEvent::Job(j) => j.event_time,
        }
    }

    /// The record subject (and Kafka key, as `openlineage-python`'s
    /// `KafkaTransport` keys them): `run:NS/JOB` for a run — every event of
    /// a job's runs in one partition, in order — `job:NS/JOB`, `dataset:NS/NAME`.
    pub fn subject(&self) -> String {
        match self {
            LineageEvent::Run(r) => format!("run:{}/{}", r.job.namespace, r.job.name),
            LineageEvent::Job(j) => format!("job:{}/{}", j.job.namespace, j.job.name),
            LineageEvent::Dataset(d) => {
                format!("dataset:{}/{}", d.dataset.namespace, d.dataset.name)
            }
        }
    }

    /// The dedupe identity: a run's event is the same event when its run id,
    /// time and type are (a client's retry, the same event over HTTP and
    /// Kafka); a dataset or job event by its dataset or job and time.
    pub fn identity(&self) -> String {
        let micros = self.event_time().timestamp_micros();
        match self {
            LineageEvent::Run(r) => format!(
                "run\u{1f}{}\u{1f}{micros}\u{1f}{}",
                r.run_id,
                r.event_type.map(RunEventType::symbol).unwrap_or("")
            ),
            LineageEvent::Job(j) => {
                format!(
                    "job\u{1f}{}\u{1f}{}\u{1f}{micros}",
                    j.job.namespace, j.job.name
                )
            }
            LineageEvent::Dataset(d) => format!(
                "dataset\u{1f}{}\u{1f}{}\u{1f}{micros}",
                d.dataset.namespace, d.dataset.name
            ),
        }
    }
}

/// Parses and checks an OpenLineage event's JSON text.
pub fn parse_str(text: &str) -> Result<LineageEvent, SchemaError> {
    let json: Json = serde_json::from_str(text)
        .map_err(|e| SchemaError::new(ErrorKind::InvalidJson, format!("invalid JSON: {e}")))?;
    parse(&json)
}

/// True when `json` looks like an OpenLineage event rather than Conductor's
/// envelope: an object with no `kind` and an `eventTime` or `schemaURL`.
pub fn looks_like_openlineage(json: &Json) -> bool {
    json.as_object().is_some_and(|o| {
        !o.contains_key("kind") && (o.contains_key("eventTime") || o.contains_key("schemaURL"))
    })
}

/// Checks an OpenLineage event against the 2-0-2 schema.
pub fn parse(json: &Json) -> Result<LineageEvent, SchemaError> {
    let root = object(json, "")?;
    let event_time = date_time(root, "", "eventTime")?;
    let producer = uri(root, "", "producer")?;
    uri(root, "", "schemaURL")?;
    if root.contains_key("run") {
        let event_type = match root.get("eventType") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(RunEventType::from_symbol(s).ok_or_else(|| {
                SchemaError::field("eventType", format!("{s:?} is not an event type"))
                    .with_hint("START, RUNNING, COMPLETE, ABORT, FAIL or OTHER")
            })?),
            Some(other) => return Err(wrong_type("eventType", "a string", other)),
        };
        let run = object(required(root, "", "run")?, "run")?;
        let run_id = string(run, "run", "runId")?;
        if !is_uuid(&run_id) {
            return Err(
                SchemaError::field("run.runId", format!("{run_id:?} is not a UUID"))
                    .with_hint("a run id is a UUID, e.g. 0176a8c2-fe01-7439-87e6-56a1a1b4029f"),
            );
        }
        let run_facets = facets(run, "run", "facets")?;
        let job = job(root)?;
        Ok(LineageEvent::Run(LineageRun {
            event_type,
            event_time,
            producer,
            run_id,
            run_facets,
            job,
            inputs: datasets(root, "inputs", "inputFacets")?,
            outputs: datasets(root, "outputs", "outputFacets")?,
        }))
    } else if root.contains_key("dataset") {
        let dataset = dataset(required(root, "", "dataset")?, "dataset", None)?;
        Ok(LineageEvent::Dataset(LineageDatasetEvent {
            event_time,
            producer,
            dataset,
        }))
    } else if root.contains_key("job") {
        Ok(LineageEvent::Job(LineageJobEvent {
            event_time,
            producer,
            job: job(root)?,
            inputs: datasets(root, "inputs", "inputFacets")?,
            outputs: datasets(root, "outputs", "outputFacets")?,
        }))
    } else {
        Err(SchemaError::field("run", "missing required field")
            .with_hint("a RunEvent has run and job, a DatasetEvent dataset, a JobEvent job"))
    }
}

/// Wraps a checked OpenLineage event in the envelope, for `tenant`:
/// subject as [`LineageEvent::subject`], `occurred_at` its `eventTime`,
/// `event_id` `ol-` + a hash of its [identity](LineageEvent::identity).
pub fn to_event(json: &Json, tenant: &str) -> Result<Event, SchemaError> {
    let lineage = parse(json)?;
    if tenant.is_empty() {
        return Err(SchemaError::field("tenant", "must not be empty"));
    }
    let hash = blake3::hash(format!("{tenant}\u{1f}{}", lineage.identity()).as_bytes());
    let meta = EventMetadata {
        event_id: format!("ol-{}", &hash.to_hex()[..32]),
        tenant: tenant.to_string(),
        kind: String::new(),
        subject: lineage.subject(),
        occurred_at: lineage.event_time(),
        actor: None,
        purpose: None,
        causation_id: None,
        correlation_id: None,
        source: Some(match &lineage {
            LineageEvent::Run(r) => r.producer.clone(),
            LineageEvent::Dataset(d) => d.producer.clone(),
            LineageEvent::Job(j) => j.producer.clone(),
        }),
    };
    let data = OpenLineageEvent {
        event: serde_json::to_string(json).unwrap_or_default(),
    };
    Ok(Event::new(meta, EventData::OpenLineageEvent(data)))
}

fn job(root: &Map<String, Json>) -> Result<LineageJob, SchemaError> {
    let job = object(required(root, "", "job")?, "job")?;
    Ok(LineageJob {
        namespace: non_empty(job, "job", "namespace")?,
        name: non_empty(job, "job", "name")?,
        facets: facets(job, "job", "facets")?,
    })
}

fn datasets(
    root: &Map<String, Json>,
    key: &str,
    io_key: &str,
) -> Result<Vec<LineageDataset>, SchemaError> {
    match root.get(key) {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| dataset(item, &format!("{key}[{i}]"), Some(io_key)))
            .collect(),
        Some(other) => Err(wrong_type(key, "an array of datasets", other)),
    }
}

fn dataset(json: &Json, path: &str, io_key: Option<&str>) -> Result<LineageDataset, SchemaError> {
    let o = object(json, path)?;
    let facets = facets(o, path, "facets")?;
    if let Some(column_lineage) = facets.get("columnLineage") {
        check_column_lineage(column_lineage, &format!("{path}.facets.columnLineage"))?;
    }
    Ok(LineageDataset {
        namespace: non_empty(o, path, "namespace")?,
        name: non_empty(o, path, "name")?,
        io_facets: match io_key {
            Some(k) => self::facets(o, path, k)?,
            None => Facets::new(),
        },
        facets,
    })
}

/// `ColumnLineageDatasetFacet` 1-2-0: `fields.<name>.inputFields[]` of
/// `{namespace, name, field, transformations?[{type, subtype?}]}`.
fn check_column_lineage(facet: &Json, path: &str) -> Result<(), SchemaError> {
    let facet = object(facet, path)?;
    let fields = object(required(facet, path, "fields")?, &join(path, "fields"))?;
    for (name, lineage) in fields {
        let at = format!("{path}.fields.{name}");
        let lineage = object(lineage, &at)?;
        let inputs = required(lineage, &at, "inputFields")?;
        let Json::Array(inputs) = inputs else {
            return Err(wrong_type(&join(&at, "inputFields"), "an array", inputs));
        };
        for (i, input) in inputs.iter().enumerate() {
            let at = format!("{at}.inputFields[{i}]");
            let input = object(input, &at)?;
            for key in ["namespace", "name", "field"] {
                string(input, &at, key)?;
            }
            match input.get("transformations") {
                None | Some(Json::Null) => {}
                Some(Json::Array(ts)) => {
                    for (j, t) in ts.iter().enumerate() {
                        let at = format!("{at}.transformations[{j}]");
                        string(object(t, &at)?, &at, "type")?;
                    }
                }
                Some(other) => {
                    return Err(wrong_type(&join(&at, "transformations"), "an array", other));
                }
            }
        }
    }
    Ok(())
}

/// A facets object: every facet an object with `_producer` and `_schemaURL`
/// (`BaseFacet`).
fn facets(parent: &Map<String, Json>, path: &str, key: &str) -> Result<Facets, SchemaError> {
    let at = join(path, key);
    match parent.get(key) {
        None | Some(Json::Null) => Ok(Facets::new()),
        Some(Json::Object(facets)) => {
            for (name, facet) in facets {
                let at = format!("{at}.{name}");
                let facet = object(facet, &at)?;
                uri(facet, &at, "_producer")?;
                uri(facet, &at, "_schemaURL")?;
            }
            Ok(facets.clone())
        }
        Some(other) => Err(wrong_type(&at, "an object of facets", other)),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn object<'a>(json: &'a Json, path: &str) -> Result<&'a Map<String, Json>, SchemaError> {
    match json {
        Json::Object(o) => Ok(o),
        other if path.is_empty() => Err(SchemaError::new(
            ErrorKind::InvalidJson,
            format!(
                "expected an OpenLineage event (a JSON object), got {}",
                crate::json_validate::describe(other)
            ),
        )),
        other => Err(wrong_type(path, "an object", other)),
    }
}

fn required<'a>(
    parent: &'a Map<String, Json>,
    path: &str,
    key: &str,
) -> Result<&'a Json, SchemaError> {
    match parent.get(key) {
        None | Some(Json::Null) => Err(SchemaError::field(
            join(path, key),
            "missing required field",
        )),
        Some(value) => Ok(value),
    }
}

fn string(parent: &Map<String, Json>, path: &str, key: &str) -> Result<String, SchemaError> {
    match required(parent, path, key)? {
        Json::String(s) => Ok(s.clone()),
        other => Err(wrong_type(&join(path, key), "a string", other)),
    }
}

fn non_empty(parent: &Map<String, Json>, path: &str, key: &str) -> Result<String, SchemaError> {
    let s = string(parent, path, key)?;
    if s.trim().is_empty() {
        return Err(SchemaError::field(join(path, key), "must not be empty"));
    }
    Ok(s)
}

/// A URI (`format: uri`): a scheme, then `:`.
fn uri(parent: &Map<String, Json>, path: &str, key: &str) -> Result<String, SchemaError> {
    let s = string(parent, path, key)?;
    let scheme = s.split_once(':').map(|(scheme, _)| scheme).unwrap_or("");
    let ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !ok {
        return Err(
            SchemaError::field(join(path, key), format!("{s:?} is not a URI")).with_hint(
                "e.g. https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python",
            ),
        );
    }
    Ok(s)
}

fn date_time(
    parent: &Map<String, Json>,
    path: &str,
    key: &str,
) -> Result<DateTime<Utc>, SchemaError> {
    let s = string(parent, path, key)?;
    // As the envelope reads its times: to the microsecond, a leap second
    // (`…:60Z`) as the next second. Kept as given, the event's time would
    // change on its first trip through the log's JSON form (found by
    // fuzz/fuzz_targets/openlineage.rs).
    DateTime::parse_from_rfc3339(&s)
        .map(|t| crate::types::truncate_to_micros(t.with_timezone(&Utc)))
        .map_err(|e| {
            SchemaError::field(
                join(path, key),
                format!("{s:?} is not an RFC 3339 date-time: {e}"),
            )
            .with_hint("e.g. 2026-02-01T12:00:00.000Z (a time zone is required)")
        })
}

/// 8-4-4-4-12 hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn wrong_type(path: &str, expected: &str, got: &Json) -> SchemaError {
    SchemaError::field(
        path,
        format!(
            "expected {expected}, got {}",
            crate::json_validate::describe(got)
        ),
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn event_times_read_as_the_envelope_reads_them() {
        // A leap second and nanoseconds: what the log's JSON form gives back.
        for (given, stored) in [
            ("2026-06-30T23:59:60Z", "2026-07-01T00:00:00Z"),
            (
                "2026-02-01T12:00:00.123456789Z",
                "2026-02-01T12:00:00.123456Z",
            ),
        ] {
            let body = serde_json::json!({
                "eventTime": given,
                "eventType": "START",
                "producer": "https://example.com/producer",
                "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                "run": {"runId": "0176a8c2-fe01-7439-87e6-56a1a1b4029f"},
                "job": {"namespace": "etl", "name": "daily_totals"},
                "inputs": [],
                "outputs": []
            });
            let event = to_event(&body, "acme").unwrap();
            assert_eq!(crate::types::format_rfc3339(event.meta.occurred_at), stored);
            let again =
                crate::codec::decode_json(&crate::codec::encode_json(&event), None).unwrap();
            assert_eq!(again.meta.occurred_at, event.meta.occurred_at, "{given}");
        }
    }
    use super::*;
    use serde_json::json;

    fn facet(extra: Json) -> Json {
        let mut f = json!({"_producer": "https://example.com/p", "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/SchemaDatasetFacet.json"});
        if let (Json::Object(f), Json::Object(extra)) = (&mut f, extra) {
            f.extend(extra);
        }
        f
    }

    fn run_event() -> Json {
        json!({
            "eventType": "COMPLETE",
            "eventTime": "2026-02-01T12:00:00.123456Z",
            "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": "0176a8c2-fe01-7439-87e6-56a1a1b4029f", "facets": {}},
            "job": {"namespace": "etl", "name": "daily_totals"},
            "inputs": [{"namespace": "postgres://db", "name": "public.orders"}],
            "outputs": [{"namespace": "postgres://db", "name": "public.totals",
                "facets": {"columnLineage": facet(json!({"fields": {
                    "total": {"inputFields": [{"namespace": "postgres://db", "name": "public.orders", "field": "amount",
                        "transformations": [{"type": "DIRECT", "subtype": "AGGREGATION"}]}]},
                    "day": {"inputFields": [{"namespace": "postgres://db", "name": "public.orders", "field": "created_at"}],
                        "transformationType": "IDENTITY"}
                }}))}}]
        })
    }

    #[test]
    fn a_run_event_parses_with_its_column_lineage() {
        let LineageEvent::Run(run) = parse(&run_event()).unwrap() else {
            panic!()
        };
        assert_eq!(run.event_type, Some(RunEventType::Complete));
        assert_eq!(run.job.name, "daily_totals");
        assert_eq!(run.inputs[0].name, "public.orders");
        let lineage = run.outputs[0].column_lineage();
        assert_eq!(lineage.len(), 2);
        assert_eq!(lineage[0].field, "day");
        assert_eq!(lineage[0].inputs[0].transformation_type, "IDENTITY");
        assert_eq!(lineage[1].inputs[0].field, "amount");
        assert_eq!(lineage[1].inputs[0].transformation_subtype, "AGGREGATION");
    }

    #[test]
    fn errors_name_the_field() {
        type Breaks = fn(&mut Json);
        let cases: Vec<(Breaks, &str)> = vec![
            (|e| e["run"]["runId"] = json!("not-a-uuid"), "run.runId"),
            (|e| e["eventTime"] = json!("yesterday"), "eventTime"),
            (|e| e["eventType"] = json!("DONE"), "eventType"),
            (
                |e| {
                    e.as_object_mut().unwrap().remove("producer");
                },
                "producer",
            ),
            (|e| e["job"]["name"] = json!(""), "job.name"),
            (|e| e["inputs"] = json!({}), "inputs"),
            (
                |e| e["inputs"][0]["namespace"] = json!(7),
                "inputs[0].namespace",
            ),
            (
                |e| e["run"]["facets"]["parent"] = json!({"run": {}}),
                "run.facets.parent._producer",
            ),
            (
                |e| {
                    e["outputs"][0]["facets"]["columnLineage"]["fields"]["total"]["inputFields"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("field");
                },
                "outputs[0].facets.columnLineage.fields.total.inputFields[0].field",
            ),
            (
                |e| {
                    e.as_object_mut().unwrap().remove("run");
                    e.as_object_mut().unwrap().remove("job");
                },
                "run",
            ),
        ];
        for (break_it, path) in cases {
            let mut e = run_event();
            break_it(&mut e);
            let err = parse(&e).unwrap_err();
            assert_eq!(err.path(), path, "{err}");
        }
    }

    #[test]
    fn dataset_and_job_events_parse() {
        let d = json!({"eventTime": "2026-02-01T12:00:00Z", "producer": "https://x.io", "schemaURL": SPEC_URL,
            "dataset": {"namespace": "kafka://b", "name": "ig.ingest.entities"}});
        assert!(matches!(parse(&d).unwrap(), LineageEvent::Dataset(_)));
        let j = json!({"eventTime": "2026-02-01T12:00:00Z", "producer": "https://x.io", "schemaURL": SPEC_URL,
            "job": {"namespace": "conductor", "name": "entities"}, "outputs": [{"namespace": "sqlite", "name": "entities"}]});
        let LineageEvent::Job(job) = parse(&j).unwrap() else {
            panic!()
        };
        assert_eq!(job.outputs.len(), 1);
    }

    #[test]
    fn wrapping_keys_by_job_and_dedupes_by_run_time_and_type() {
        let a = to_event(&run_event(), "acme").unwrap();
        assert_eq!(a.meta.subject, "run:etl/daily_totals");
        assert_eq!(a.kind(), "OpenLineageEvent");
        let mut retry = run_event();
        retry["producer"] = json!("https://other.example");
        assert_eq!(
            to_event(&retry, "acme").unwrap().meta.event_id,
            a.meta.event_id
        );
        let mut running = run_event();
        running["eventType"] = json!("RUNNING");
        assert_ne!(
            to_event(&running, "acme").unwrap().meta.event_id,
            a.meta.event_id
        );
        assert_ne!(
            to_event(&run_event(), "globex").unwrap().meta.event_id,
            a.meta.event_id
        );
        assert!(looks_like_openlineage(&run_event()));
        assert!(!looks_like_openlineage(&json!({"kind": "RunEvent"})));
    }
}
