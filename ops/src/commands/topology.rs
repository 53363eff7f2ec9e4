//! `conductor topology list|validate|status|pause|resume|reset-offsets`.

use crate::backend::{Access, open_log, open_store};
use crate::cli::TopologyCommand;
use crate::error::CliError;
use crate::settings::Settings;
use crate::topologies;
use conductor_engine::log::{InputPosition, LogError};
use std::collections::BTreeMap;

pub async fn run(settings: &Settings, cmd: TopologyCommand) -> Result<(), CliError> {
    match cmd {
        TopologyCommand::List { topologies: dir } => {
            for c in topologies::load(dir.clone(), settings.topologies.clone())? {
                println!(
                    "{}\tprocessor={}\tsources={}\t{}",
                    c.name,
                    c.processor,
                    c.sources.topics.join(","),
                    c.description
                );
            }
            Ok(())
        }
        TopologyCommand::Validate { files } => {
            let mut failed = Vec::new();
            for f in &files {
                match topologies::load_file(f) {
                    Ok(c) => println!(
                        "{}: ok (topology `{}`, processor `{}`)",
                        f.display(),
                        c.name,
                        c.processor
                    ),
                    Err(e) => failed.push(e.message),
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(CliError::plain(failed.join("\n")))
            }
        }
        TopologyCommand::Status {
            name,
            topologies: dir,
            listen,
            json,
        } => {
            let live = live_statuses(super::run::listen_addr(listen, settings)).await;
            status(settings, name, dir, live, json).await
        }
        TopologyCommand::Pause { name } => set_paused(settings, &name, true).await,
        TopologyCommand::Resume { name } => set_paused(settings, &name, false).await,
        TopologyCommand::ResetOffsets {
            name,
            to,
            topologies: dir,
        } => reset_offsets(settings, &name, &to, dir).await,
    }
}

pub(crate) fn find(
    settings: &Settings,
    dir: Option<std::path::PathBuf>,
    name: &str,
) -> Result<conductor_engine::runtime::TopologyConfig, CliError> {
    topologies::load(dir.clone(), settings.topologies.clone())?
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            CliError::usage(
                format!(
                    "no topology named `{name}` in {}",
                    topologies::source(dir.as_ref(), settings.topologies.as_ref())
                ),
                "`conductor topology list` shows them",
            )
        })
}

async fn set_paused(settings: &Settings, name: &str, paused: bool) -> Result<(), CliError> {
    let store = open_store(settings).await?;
    let current = store.control(name).await?;
    if current.paused == paused {
        return Err(CliError::plain(format!(
            "topology `{name}` is already {}",
            if paused {
                "paused"
            } else {
                "running (not paused)"
            }
        )));
    }
    let control = store.set_paused(name, paused).await?;
    if paused {
        // The store fences commits on the epoch, so this holds at once.
        println!(
            "topology {name} paused (epoch {}): no further batch is stored until it is resumed",
            control.epoch
        );
    } else {
        println!(
            "topology {name} resumed (epoch {}); a running worker picks up within a second",
            control.epoch
        );
    }
    Ok(())
}

/// What the `conductor run` serving at `addr` reports of its topologies —
/// state, what it waits on, the relay — by name; empty when none answers
/// within a second (none runs, or it runs elsewhere).
async fn live_statuses(addr: std::net::SocketAddr) -> BTreeMap<String, serde_json::Value> {
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(1))
        .build()
    else {
        return BTreeMap::new();
    };
    let answer = match client
        .get(format!("http://{addr}/v1/topologies"))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r.json::<Vec<serde_json::Value>>().await,
        _ => return BTreeMap::new(),
    };
    answer
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| {
            let name = t["name"].as_str()?.to_string();
            let live = serde_json::json!({
                "at": addr.to_string(),
                "state": t["state"],
                "waiting_on": t["waiting_on"],
                "error": t["error"],
                "relay": {"state": t["relay"]["state"], "waiting_on": t["relay"]["waiting_on"]},
            });
            Some((name, live))
        })
        .collect()
}

/// One line of what the running process reports (`running: …`).
fn live_line(live: &serde_json::Value) -> String {
    let mut line = format!("  running: {}", live["state"].as_str().unwrap_or("unknown"));
    if let Some(w) = live["waiting_on"].as_str() {
        line.push_str(&format!(", waiting on {w}"));
    }
    let relay = &live["relay"];
    line.push_str(&format!(
        "; relay {}",
        relay["state"].as_str().unwrap_or("unknown")
    ));
    if let Some(w) = relay["waiting_on"].as_str() {
        line.push_str(&format!(", waiting on {w}"));
    }
    line
}

async fn status(
    settings: &Settings,
    name: Option<String>,
    dir: Option<std::path::PathBuf>,
    live: BTreeMap<String, serde_json::Value>,
    json: bool,
) -> Result<(), CliError> {
    let configs = topologies::load(dir.clone(), settings.topologies.clone())?;
    let store = match open_store(settings).await {
        Ok(store) => store,
        // The store is down: what the running process says is all there is.
        Err(e) if !live.is_empty() => {
            eprintln!(
                "note: {}; showing what the running conductor reports",
                e.message
            );
            let wanted = |n: &String| name.as_ref().is_none_or(|w| w == n);
            if json {
                let out: Vec<_> = live
                    .iter()
                    .filter(|(n, _)| wanted(n))
                    .map(|(n, l)| serde_json::json!({"name": n, "live": l}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                for (n, l) in live.iter().filter(|(n, _)| wanted(n)) {
                    println!("{n}\n{}", live_line(l));
                }
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let log = open_log(settings, Access::Read).await?;
    let mut out = Vec::new();
    for c in configs
        .iter()
        .filter(|c| name.as_ref().is_none_or(|n| n == &c.name))
    {
        let offsets = store.load_offsets(&c.name).await?;
        let control = store.control(&c.name).await?;
        let mut parts = Vec::new();
        let mut total_lag = 0;
        for topic in &c.sources.topics {
            let d = match log.describe_topic(topic).await {
                Ok(d) => d,
                Err(LogError::UnknownTopic(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            for p in d.partitions {
                let pos = offsets.get(&(topic.clone(), p.partition)).copied();
                let lag = p.high_watermark - pos.unwrap_or(p.low_watermark);
                total_lag += lag;
                parts.push(serde_json::json!({"topic": topic, "partition": p.partition, "next_offset": pos, "high_watermark": p.high_watermark, "lag": lag}));
            }
        }
        let sinks = sink_status(settings, c, log.as_ref()).await;
        let mut entry = serde_json::json!({"name": c.name, "processor": c.processor, "paused": control.paused, "lag": total_lag, "partitions": parts, "sinks": sinks});
        if let Some(l) = live.get(&c.name) {
            entry["live"] = l.clone();
        }
        out.push(entry);
    }
    if let Some(n) = &name
        && out.is_empty()
    {
        return Err(CliError::usage(
            format!(
                "no topology named `{n}` in {}",
                topologies::source(dir.as_ref(), settings.topologies.as_ref())
            ),
            "`conductor topology list` shows them",
        ));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for t in &out {
            println!(
                "{}  processor={}  {}  lag={}",
                t["name"].as_str().unwrap_or(""),
                t["processor"].as_str().unwrap_or(""),
                if t["paused"] == true {
                    "PAUSED"
                } else {
                    "active"
                },
                t["lag"]
            );
            if !t["live"].is_null() {
                println!("{}", live_line(&t["live"]));
            }
            for p in t["partitions"].as_array().into_iter().flatten() {
                println!(
                    "  {}[{}]  next={}  end={}  lag={}",
                    p["topic"].as_str().unwrap_or(""),
                    p["partition"],
                    p["next_offset"],
                    p["high_watermark"],
                    p["lag"]
                );
            }
            for s in t["sinks"].as_array().into_iter().flatten() {
                match s["error"].as_str() {
                    None => println!(
                        "  sink {}  {}  lag={}",
                        s["kind"].as_str().unwrap_or(""),
                        s["target"].as_str().unwrap_or(""),
                        s["lag"]
                    ),
                    Some(e) => println!(
                        "  sink {}  {}  unavailable: {e}",
                        s["kind"].as_str().unwrap_or(""),
                        s["target"].as_str().unwrap_or("")
                    ),
                }
            }
        }
    }
    Ok(())
}

/// The graph sink's position against its topic, when the topology has a
/// graph and a Neo4j is configured (read from the positions it stores in Neo4j).
async fn sink_status(
    settings: &Settings,
    config: &conductor_engine::runtime::TopologyConfig,
    log: &dyn conductor_engine::log::Log,
) -> Vec<serde_json::Value> {
    use conductor_engine::runtime::TopicSink;
    let Some(neo4j) = &settings.neo4j else {
        return Vec::new();
    };
    let has_graph = topologies::build_processor(config).is_ok_and(|p| p.graph().is_some());
    if !has_graph {
        return Vec::new();
    }
    let mut sink = conductor_connectors::neo4j::Neo4jGraphSink::new(neo4j.clone(), &config.name);
    let topic = config.graph_topic();
    let target = sink.target();
    let positions = match sink.load_positions(&topic).await {
        Ok(p) => p,
        Err(e) => {
            return vec![
                serde_json::json!({"kind": "neo4j", "target": target, "topic": topic, "error": e.to_string()}),
            ];
        }
    };
    let mut lag = 0;
    if let Ok(d) = log.describe_topic(&topic).await {
        for p in d.partitions {
            let at = positions
                .get(&p.partition)
                .copied()
                .unwrap_or(p.low_watermark);
            lag += (p.high_watermark - at).max(0);
        }
    }
    vec![serde_json::json!({"kind": "neo4j", "target": target, "topic": topic, "lag": lag})]
}

async fn reset_offsets(
    settings: &Settings,
    name: &str,
    to: &str,
    dir: Option<std::path::PathBuf>,
) -> Result<(), CliError> {
    let config = find(settings, dir, name)?;
    // Taking the write side of the log proves no `conductor run` holds it
    // (file log); a running worker would overwrite the positions.
    let log = match open_log(settings, Access::Write).await {
        Err(e) if e.message.contains("locked") => {
            return Err(CliError::new(
                format!(
                    "cannot reset offsets of `{name}` while a conductor process runs on this data directory"
                ),
                "stop `conductor run` first",
            ));
        }
        other => other?,
    };
    let when = match to {
        "earliest" | "latest" => None,
        t => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| {
                    CliError::usage(
                        format!("--to {t}: {e}"),
                        "use earliest, latest, or an RFC 3339 time like 2026-02-01T12:00:00Z",
                    )
                })?
                .timestamp_millis(),
        ),
    };
    let store = open_store(settings).await?;
    let mut positions = Vec::new();
    for topic in &config.sources.topics {
        for p in log.describe_topic(topic).await?.partitions {
            let next = match (to, when) {
                ("earliest", _) => p.low_watermark,
                ("latest", _) => p.high_watermark,
                (_, Some(ms)) => log
                    .offset_for_timestamp(topic, p.partition, ms)
                    .await?
                    .unwrap_or(p.high_watermark),
                _ => p.high_watermark,
            };
            positions.push(InputPosition {
                topic: topic.clone(),
                partition: p.partition,
                next_offset: next,
            });
        }
    }
    store.store_offsets(name, &positions).await?;
    for p in &positions {
        println!("{}[{}] -> {}", p.topic, p.partition, p.next_offset);
    }
    println!(
        "reset {} positions of topology {name} to {to}",
        positions.len()
    );
    Ok(())
}
