//! `conductor produce`: validate events and append them to a topic.

use crate::backend::{Access, open_log};
use crate::cli::{InputFormat, ProduceArgs};
use crate::error::CliError;
use crate::settings::Settings;
use conductor_engine::envelope::{Encoding, event_key, event_record};
use conductor_engine::log::{Log, Record, partition_for_key};
use conductor_schemas::{Event, codec};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

/// Events are appended in batches of this many per partition.
const BATCH: usize = 1000;

pub async fn run(global: &Settings, args: ProduceArgs) -> Result<(), CliError> {
    let input: Box<dyn Read> = if args.file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.file)
                .map_err(|e| CliError::plain(format!("cannot open {}: {e}", args.file)))?,
        )
    };
    let log = open_log(global, Access::Write).await?;
    let partitions = log.describe_topic(&args.topic).await?.partitions.len() as i32;
    if let Some(p) = args.partition
        && !(0..partitions).contains(&p)
    {
        return Err(CliError::usage(
            format!(
                "--partition {p} is out of range: topic {} has partitions 0..{}",
                args.topic,
                partitions - 1
            ),
            "omit --partition to partition by key",
        ));
    }
    let mut batcher = Batcher {
        log: log.as_ref(),
        topic: &args.topic,
        pending: BTreeMap::new(),
        appended: 0,
    };
    let mut rejected = 0u64;
    let place = |event: &Event| {
        args.partition
            .unwrap_or_else(|| partition_for_key(event_key(event).as_bytes(), partitions))
    };
    match args.format {
        InputFormat::Json => {
            for (i, line) in BufReader::new(input).lines().enumerate() {
                let line =
                    line.map_err(|e| CliError::plain(format!("reading line {}: {e}", i + 1)))?;
                if line.trim().is_empty() {
                    continue;
                }
                match codec::decode_json(line.as_bytes(), args.schema.as_deref()) {
                    Ok(event) => {
                        batcher
                            .push(place(&event), event_record(&event, Encoding::Json))
                            .await?
                    }
                    Err(e) => {
                        rejected += 1;
                        eprintln!("line {}: rejected: {e}", i + 1);
                    }
                }
            }
        }
        InputFormat::Avro => {
            let events = codec::read_ocf(input, args.schema.as_deref())?;
            for (i, event) in events.enumerate() {
                match event {
                    Ok(event) => {
                        batcher
                            .push(
                                place(&event),
                                event_record(&event, Encoding::AvroSingleObject),
                            )
                            .await?
                    }
                    Err(e) => {
                        // A container file can't be resynchronised after a bad record.
                        rejected += 1;
                        eprintln!(
                            "record {}: rejected: {e} (the rest of the file was not read)",
                            i + 1
                        );
                        break;
                    }
                }
            }
        }
    }
    batcher.flush().await?;
    println!(
        "appended {} event{} to {}{}",
        batcher.appended,
        if batcher.appended == 1 { "" } else { "s" },
        args.topic,
        if rejected > 0 {
            format!(" ({rejected} rejected)")
        } else {
            String::new()
        }
    );
    if rejected > 0 {
        return Err(CliError {
            message: format!("{rejected} input record(s) were rejected and not appended"),
            hint: Some("fix the lines reported above and produce them again".into()),
            exit_code: 1,
        });
    }
    Ok(())
}

struct Batcher<'a> {
    log: &'a dyn Log,
    topic: &'a str,
    pending: BTreeMap<i32, Vec<Record>>,
    appended: u64,
}

impl Batcher<'_> {
    async fn push(&mut self, partition: i32, record: Record) -> Result<(), CliError> {
        let batch = self.pending.entry(partition).or_default();
        batch.push(record);
        if batch.len() >= BATCH {
            let batch = std::mem::take(batch);
            self.append(partition, batch).await?;
        }
        Ok(())
    }

    async fn append(&mut self, partition: i32, batch: Vec<Record>) -> Result<(), CliError> {
        let n = batch.len() as u64;
        self.log.append(self.topic, partition, batch).await?;
        self.appended += n;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), CliError> {
        for (p, batch) in std::mem::take(&mut self.pending) {
            if !batch.is_empty() {
                self.append(p, batch).await?;
            }
        }
        Ok(())
    }
}
