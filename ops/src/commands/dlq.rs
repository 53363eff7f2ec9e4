//! `conductor dlq list|inspect|redrive TOPOLOGY`.
//!
//! The DLQ topic (`ig.dlq.<topology>`, one partition) holds the original
//! key, bytes and headers of each rejected record plus `ig-dlq-*` headers:
//! source topic/partition/offset, error kind and reason.

use crate::backend::{Access, open_log};
use crate::cli::DlqCommand;
use crate::error::CliError;
use crate::settings::Settings;
use conductor_engine::log::{Header, Log, LogError, Record, StoredRecord};
use conductor_engine::runtime::fold::*;

fn dlq_topic(topology: &str) -> String {
    format!("ig.dlq.{topology}")
}

fn header(r: &StoredRecord, key: &str) -> String {
    r.record
        .header(key)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

async fn read_all(log: &dyn Log, topic: &str) -> Result<Vec<StoredRecord>, CliError> {
    let (low, high) = match log.watermarks(topic, 0).await {
        Ok(w) => w,
        Err(LogError::UnknownTopic(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    let mut next = low;
    while next < high {
        let batch = log.read(topic, 0, next, 1000).await?;
        let Some(last) = batch.last() else { break };
        next = last.offset + 1;
        out.extend(batch);
    }
    Ok(out)
}

pub async fn run(settings: &Settings, cmd: DlqCommand) -> Result<(), CliError> {
    match cmd {
        DlqCommand::List { topology, limit } => {
            let log = open_log(settings, Access::Read).await?;
            let records = read_all(log.as_ref(), &dlq_topic(&topology)).await?;
            println!(
                "{} dead-lettered record(s) in {}",
                records.len(),
                dlq_topic(&topology)
            );
            for r in records.iter().take(limit) {
                println!(
                    "{:>6}  {}[{}]@{}  {:<16}  {}",
                    r.offset,
                    header(r, HEADER_DLQ_SOURCE_TOPIC),
                    header(r, HEADER_DLQ_SOURCE_PARTITION),
                    header(r, HEADER_DLQ_SOURCE_OFFSET),
                    header(r, HEADER_DLQ_ERROR_KIND),
                    header(r, HEADER_DLQ_REASON)
                );
            }
            Ok(())
        }
        DlqCommand::Inspect { topology, offset } => {
            let log = open_log(settings, Access::Read).await?;
            let r = log
                .read(&dlq_topic(&topology), 0, offset, 1)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    CliError::usage(
                        format!("no record at offset {offset} of {}", dlq_topic(&topology)),
                        "`conductor dlq list` shows the offsets",
                    )
                })?;
            let headers: serde_json::Map<String, serde_json::Value> = r
                .record
                .headers
                .iter()
                .map(|h| {
                    (
                        h.key.clone(),
                        String::from_utf8_lossy(&h.value).into_owned().into(),
                    )
                })
                .collect();
            let view = serde_json::json!({
                "dlq_offset": r.offset,
                "source": {"topic": header(&r, HEADER_DLQ_SOURCE_TOPIC), "partition": header(&r, HEADER_DLQ_SOURCE_PARTITION), "offset": header(&r, HEADER_DLQ_SOURCE_OFFSET)},
                "error_kind": header(&r, HEADER_DLQ_ERROR_KIND),
                "reason": header(&r, HEADER_DLQ_REASON),
                "key": r.record.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "value_utf8": String::from_utf8_lossy(&r.record.value),
                "value_hex": r.record.value.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "headers": headers,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&view).unwrap_or_default()
            );
            Ok(())
        }
        DlqCommand::Redrive {
            topology,
            offset,
            all,
        } => {
            if offset.is_none() && !all {
                return Err(CliError::usage(
                    "say which records to redrive",
                    "pass --offset N for one record or --all",
                ));
            }
            let log = match open_log(settings, Access::Write).await {
                Err(e) if e.message.contains("locked") => {
                    return Err(CliError::new(
                        "cannot redrive while a conductor process writes to this file log",
                        "stop `conductor run` first (with the Kafka backend, redrive works while it runs)",
                    ));
                }
                other => other?,
            };
            let records = read_all(log.as_ref(), &dlq_topic(&topology)).await?;
            let chosen: Vec<&StoredRecord> = records
                .iter()
                .filter(|r| offset.is_none_or(|o| r.offset == o))
                .collect();
            if chosen.is_empty() {
                return Err(CliError::usage(
                    "nothing to redrive",
                    "`conductor dlq list` shows the offsets",
                ));
            }
            for r in &chosen {
                let topic = header(r, HEADER_DLQ_SOURCE_TOPIC);
                let partition: i32 = header(r, HEADER_DLQ_SOURCE_PARTITION).parse().unwrap_or(0);
                let headers: Vec<Header> = r
                    .record
                    .headers
                    .iter()
                    .filter(|h| !h.key.starts_with("ig-dlq-"))
                    .cloned()
                    .collect();
                let record = Record {
                    key: r.record.key.clone(),
                    value: r.record.value.clone(),
                    headers,
                    timestamp_ms: conductor_engine::log::now_ms(),
                };
                let at = log.append(&topic, partition, vec![record]).await?;
                println!(
                    "redrove dlq offset {} to {topic}[{partition}]@{}",
                    r.offset, at.first
                );
            }
            println!(
                "{} record(s) redriven; the topology folds them again (fix the producer or the processor first)",
                chosen.len()
            );
            Ok(())
        }
    }
}
