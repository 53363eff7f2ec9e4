//! `conductor topic create|list|describe`.

use crate::backend::{Access, open_log};
use crate::cli::TopicCommand;
use crate::error::CliError;
use crate::settings::Settings;
use conductor_engine::log::TopicConfig;

pub async fn run(global: &Settings, cmd: TopicCommand) -> Result<(), CliError> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
        } => {
            if partitions < 1 {
                return Err(CliError::usage(
                    format!("--partitions must be at least 1, got {partitions}"),
                    "pass e.g. --partitions 3",
                ));
            }
            let log = open_log(global, Access::Write).await?;
            log.create_topic(
                &name,
                &TopicConfig {
                    partitions,
                    retention_ms,
                    retention_bytes,
                },
            )
            .await?;
            println!(
                "created topic {name} with {partitions} partition{}",
                if partitions == 1 { "" } else { "s" }
            );
        }
        TopicCommand::List => {
            let log = open_log(global, Access::Read).await?;
            for t in log.list_topics().await? {
                println!("{t}");
            }
        }
        TopicCommand::Describe { name, json } => {
            let log = open_log(global, Access::Read).await?;
            let d = log.describe_topic(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
            } else {
                println!("topic {} ({} partitions)", d.topic, d.partitions.len());
                println!(
                    "{:>9}  {:>14}  {:>14}  {:>10}",
                    "partition", "low_watermark", "high_watermark", "records"
                );
                for p in &d.partitions {
                    println!(
                        "{:>9}  {:>14}  {:>14}  {:>10}",
                        p.partition,
                        p.low_watermark,
                        p.high_watermark,
                        p.high_watermark - p.low_watermark
                    );
                }
            }
        }
    }
    Ok(())
}
