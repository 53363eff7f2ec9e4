//! `conductor lineage NODE` and `conductor lineage impact NODE`: the lineage
//! topology's graph, read from its `ig.graph.lineage` topic (every graph
//! mutation it applied), walked in memory. Nothing is written.

use crate::backend::{Access, open_log};
use crate::cli::LineageArgs;
use crate::error::CliError;
use crate::lineage_service::read_graph;
use crate::settings::Settings;
use conductor_engine::graph::graph_topic;
use conductor_processors::lineage::query::{Direction, LineageGraph, QueryError};
use std::collections::BTreeMap;
use std::sync::RwLock;

pub async fn run(settings: &Settings, args: LineageArgs) -> Result<(), CliError> {
    let (impact, node) = match args.node.as_slice() {
        [node] => (false, node.clone()),
        [verb, node] if verb == "impact" => (true, node.clone()),
        [verb, _] => {
            return Err(CliError::usage(
                format!("`{verb}` is not a lineage subcommand"),
                "use `conductor lineage NODE` or `conductor lineage impact NODE`",
            ));
        }
        _ => unreachable!("clap takes one or two values"),
    };
    let direction: Direction = args.direction.parse().map_err(|e: String| {
        CliError::usage(format!("--direction: {e}"), "e.g. --direction upstream")
    })?;
    let graph = load(settings, &args.topology).await?;
    let not_answered = |e: QueryError| match e {
        QueryError::BadNodeId(_) => CliError::usage(e.to_string(), "e.g. dataset:sqlite:entities"),
        QueryError::NotFound { .. } => CliError::new(
            e.to_string(),
            "check the tenant (--tenant) and the id; `conductor sql \"SELECT id FROM lineage_nodes\"` lists them",
        ),
    };
    if impact {
        let impact = graph.impact(&args.tenant, &node).map_err(not_answered)?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&impact).unwrap_or_default()
            );
        } else {
            println!(
                "a change to {node} touches {} job(s) and {} dataset(s) downstream",
                impact.jobs.len(),
                impact.datasets.len()
            );
            for job in &impact.jobs {
                println!("  {job}");
            }
            for dataset in &impact.datasets {
                println!("  {dataset}");
            }
        }
        return Ok(());
    }
    let lineage = graph
        .lineage(&args.tenant, &node, args.depth, direction)
        .map_err(not_answered)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&lineage).unwrap_or_default()
        );
    } else if args.dot {
        print!("{}", LineageGraph::to_dot(&lineage));
    } else {
        for n in &lineage.graph {
            let kind = if n.node_type == "JOB" {
                "job    "
            } else {
                "dataset"
            };
            let mut line = format!("{kind} {}", n.id);
            if let Some(state) = n.data["latestRun"]["state"].as_str() {
                line.push_str(&format!("  (latest run {state})"));
            }
            println!("{line}");
            for e in &n.out_edges {
                println!("          → {}", e.destination);
            }
        }
    }
    Ok(())
}

/// The graph of `topology`, as its graph topic holds it now.
pub async fn load(settings: &Settings, topology: &str) -> Result<LineageGraph, CliError> {
    let log = open_log(settings, Access::Read).await?;
    let graph = RwLock::new(LineageGraph::default());
    let topic = graph_topic(topology);
    read_graph(log.as_ref(), &topic, &mut BTreeMap::new(), &graph).await?;
    Ok(graph.into_inner().unwrap_or_else(|e| e.into_inner()))
}
