//! `conductor consume`: print a topic's events, each with its resume cursor.

use crate::backend::{Access, cursor_key, open_log};
use crate::cli::ConsumeArgs;
use crate::error::CliError;
use crate::settings::Settings;
use conductor_engine::cursor::CursorKey;
use conductor_engine::cursor::{Cursor, check_against_log};
use conductor_engine::envelope::{decode_event, record_tenant};
use conductor_engine::log::StoredRecord;
use conductor_engine::runtime::fold::HEADER_CHANGE_ID;
use conductor_schemas::Event;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// The tenant a cursor is bound to when `--tenant` is not given.
pub const ALL_TENANTS: &str = "*";
const CHUNK: usize = 500;

pub async fn run(global: &Settings, args: ConsumeArgs) -> Result<(), CliError> {
    let log = open_log(global, Access::Read).await?;
    let key = cursor_key(global)?;
    let tenant = args
        .tenant
        .clone()
        .unwrap_or_else(|| ALL_TENANTS.to_string());
    let description = log.describe_topic(&args.topic).await?;
    let mut positions: BTreeMap<i32, i64> = match args.from.as_str() {
        "earliest" => description
            .partitions
            .iter()
            .map(|p| (p.partition, p.low_watermark))
            .collect(),
        "latest" => description
            .partitions
            .iter()
            .map(|p| (p.partition, p.high_watermark))
            .collect(),
        token => {
            let cursor = key.decode(token, &tenant)?;
            if cursor.topic != args.topic {
                return Err(CliError::usage(
                    format!(
                        "the cursor is for topic `{}`, not `{}`",
                        cursor.topic, args.topic
                    ),
                    format!("consume --topic {} with this cursor", cursor.topic),
                ));
            }
            check_against_log(log.as_ref(), &cursor).await??;
            let mut positions: BTreeMap<i32, i64> = description
                .partitions
                .iter()
                .map(|p| (p.partition, p.low_watermark))
                .collect();
            positions.extend(cursor.positions);
            positions
        }
    };
    let mut remaining = args.limit.unwrap_or(u64::MAX);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while remaining > 0 {
        let mut progressed = false;
        let parts: Vec<i32> = positions.keys().copied().collect();
        for p in parts {
            let from = positions[&p];
            let records = log.read(&args.topic, p, from, CHUNK).await?;
            progressed |= !records.is_empty();
            for r in records {
                positions.insert(p, r.offset + 1);
                if let Some(t) = &args.tenant
                    && record_tenant(&r.record).is_some_and(|rt| rt != t)
                {
                    continue;
                }
                let line = render(&r, &args.tenant, &positions, &key, &tenant);
                let Some(line) = line else { continue };
                writeln!(out, "{line}")?;
                remaining -= 1;
                if remaining == 0 {
                    break;
                }
            }
            if remaining == 0 {
                break;
            }
        }
        if !progressed {
            if !args.follow {
                break;
            }
            out.flush()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    out.flush()?;
    Ok(())
}

/// One line of `conductor consume` output, in this key order.
#[derive(Serialize)]
struct Line<'a> {
    cursor: String,
    topic: &'a str,
    partition: i32,
    offset: i64,
    key: Option<std::borrow::Cow<'a, str>>,
    timestamp_ms: i64,
    event: Option<Payload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The raw value (lossy UTF-8) when it could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<std::borrow::Cow<'a, str>>,
}

/// What a record holds: an event, or (changefeeds) a change event.
#[derive(Serialize)]
#[serde(untagged)]
enum Payload {
    Event(Box<Event>),
    Change(serde_json::Value),
}

/// One output line, or `None` when the record belongs to another tenant.
fn render(
    r: &StoredRecord,
    tenant_filter: &Option<String>,
    positions: &BTreeMap<i32, i64>,
    key: &CursorKey,
    tenant: &str,
) -> Option<String> {
    let decoded = match r.record.header(HEADER_CHANGE_ID) {
        // Change events are JSON documents of their own, not schema events.
        Some(_) => serde_json::from_slice::<serde_json::Value>(&r.record.value)
            .map(Payload::Change)
            .map_err(|e| e.to_string()),
        None => decode_event(&r.record)
            .map(|e| Payload::Event(Box::new(e)))
            .map_err(|e| e.to_string()),
    };
    let tenant_of = |p: &Payload| match p {
        Payload::Event(e) => e.meta.tenant.clone(),
        Payload::Change(v) => v["tenant"].as_str().unwrap_or_default().to_string(),
    };
    if let (Some(t), Ok(payload)) = (tenant_filter, &decoded)
        && &tenant_of(payload) != t
    {
        return None;
    }
    if tenant_filter.is_some() && decoded.is_err() && record_tenant(&r.record).is_none() {
        // Can't prove whose it is: never show it to a tenant-scoped reader.
        return None;
    }
    let cursor = key.encode(&Cursor {
        tenant: tenant.to_string(),
        topic: r.topic.clone(),
        positions: positions.clone(),
    });
    let (event, error, value) = match decoded {
        Ok(event) => (Some(event), None, None),
        Err(e) => (
            None,
            Some(e),
            Some(String::from_utf8_lossy(&r.record.value)),
        ),
    };
    let line = Line {
        cursor,
        topic: &r.topic,
        partition: r.partition,
        offset: r.offset,
        key: r.record.key.as_deref().map(String::from_utf8_lossy),
        timestamp_ms: r.record.timestamp_ms,
        event,
        error,
        value,
    };
    serde_json::to_string(&line).ok()
}
