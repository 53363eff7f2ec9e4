//! `conductor demo`: the whole path on the embedded defaults — generate a
//! dataset, produce it, fold it with the shipped topologies, show the result
//! and what to try next.

use crate::backend::{Access, open_log, open_store};
use crate::cli::DemoArgs;
use crate::error::CliError;
use crate::server::{self, AppState};
use crate::settings::Settings;
use crate::topologies;
use conductor_engine::envelope::{Encoding, event_key, event_record};
use conductor_engine::log::{Log, Record, partition_for_key};
use conductor_engine::runtime::worker::ensure_topic;
use conductor_processors::demo_data::{self, ENTITIES_TOPIC, RELATIONSHIPS_TOPIC};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The shipped `entities` topology, used when no `./topologies` directory is around.
const PARTITIONS: i32 = 3;

pub async fn run(settings: &Settings, args: DemoArgs) -> Result<(), CliError> {
    if args.fresh {
        for path in [
            settings.data_dir.join("log"),
            settings.data_dir.join("projections.db"),
        ] {
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else if path.exists() {
                std::fs::remove_file(&path)?;
            }
        }
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(settings.data_dir.join(format!("projections.db{suffix}")));
        }
    }
    let configs = topologies::load(args.topologies.clone(), settings.topologies.clone())?;
    let metrics = server::metrics_handle();
    let log = open_log(settings, Access::Write).await?;
    println!(
        "conductor demo — data directory {}",
        settings.data_dir.display()
    );
    let loaded = load_dataset(log.as_ref(), args.people).await?;
    let store = open_store(settings).await?;
    let names: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
    let (running, reporter) =
        topologies::start_reported(settings, configs, log.clone(), store.clone()).await?;
    let listen = super::run::listen_addr(args.listen, settings);
    let secret = demo_secret(settings)?;
    let state = AppState {
        topologies: Arc::new(running.statuses.clone()),
        metrics,
        subscriptions: server::subscriptions(settings, log.clone(), Some(&secret))?,
        search: None,
        lineage: None,
    };
    let server = match server::serve(listen, state).await {
        Ok(addr) => Some(addr),
        Err(e) => {
            eprintln!(
                "note: HTTP server not started on {listen} ({e}); pass --listen 127.0.0.1:0 to pick a free port"
            );
            None
        }
    };

    let total = loaded.max(1);
    let bar = crate::console::progress_bar(
        total,
        "{spinner} folding [{bar:40}] {pos}/{len} events  {per_sec}  eta {eta}",
    );
    loop {
        // Every topology folds its own sources: the bar counts them all.
        let (mut lag, mut end) = (0i64, 0i64);
        let mut known = true;
        for s in &running.statuses {
            let snap = s.snapshot();
            if snap.partitions.is_empty() {
                known = false;
            }
            lag += snap.partitions.iter().map(|p| p.lag).sum::<i64>();
            end += snap
                .partitions
                .iter()
                .map(|p| p.high_watermark)
                .sum::<i64>();
            if let Some(err) = &snap.error
                && snap.state == conductor_engine::runtime::TopologyState::Failed
            {
                bar.abandon();
                return Err(CliError::plain(format!(
                    "topology {} failed: {err}",
                    snap.name
                )));
            }
        }
        let length = if known {
            (end.max(0) as u64).max(total)
        } else {
            total
        };
        bar.set_length(length);
        bar.set_position(length.saturating_sub(lag.max(0) as u64));
        // The status lags a batch behind and knows nothing of what an
        // upstream relay is about to append: ask the store and the log.
        if known && lag == 0 && running.is_idle().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bar.finish();
    // Without --serve the runs end here (COMPLETE), folded by the lineage
    // topology before the summary reads its graph.
    if !args.serve {
        crate::run_lineage::report_end(reporter.as_ref(), &running).await;
    }
    let running = if args.serve {
        Some(running)
    } else {
        running.shutdown().await?;
        None
    };
    summary(
        log.as_ref(),
        store.as_ref(),
        &names,
        settings,
        args.topologies.clone(),
        args.listen,
    )
    .await?;
    if let Some(running) = running {
        if let Some(addr) = server {
            println!(
                "\nserving on http://{addr} (Ctrl-C stops): /v1/topologies  /metrics  /healthz"
            );
            let token = demo_token(&secret, "acme");
            println!("follow tenant acme's entity changes (SSE; the token is valid for a day):");
            println!(
                "  curl -N -H 'Authorization: Bearer {token}' 'http://{addr}/v1/changes?topic=ig.changefeed.entities&from=earliest'"
            );
        }
        super::run::wait_for_signal().await;
        crate::run_lineage::report_end(reporter.as_ref(), &running).await;
        running.shutdown().await?;
    }
    Ok(())
}

/// Produces the dataset unless the ingest topics already hold data. Returns
/// how many input records the topologies have to fold.
async fn load_dataset(log: &dyn Log, people: usize) -> Result<u64, CliError> {
    for t in [ENTITIES_TOPIC, RELATIONSHIPS_TOPIC] {
        ensure_topic(log, t, PARTITIONS).await?;
    }
    let existing = input_records(log).await?;
    if existing > 0 {
        println!(
            "dataset already loaded ({existing} records in the ingest topics; `conductor demo --fresh` starts over)"
        );
        return Ok(existing);
    }
    let events = demo_data::generate(people, 0x1D_C0DE);
    let mut batches: BTreeMap<(&str, i32), Vec<Record>> = BTreeMap::new();
    for e in &events {
        match conductor_schemas::codec::decode_json(e.line.as_bytes(), None) {
            Ok(event) => {
                let p = partition_for_key(event_key(&event).as_bytes(), PARTITIONS);
                batches
                    .entry((e.topic, p))
                    .or_default()
                    .push(event_record(&event, Encoding::Json));
            }
            // Broken on purpose: appended as they came, for the DLQ to catch.
            Err(_) => batches
                .entry((e.topic, 0))
                .or_default()
                .push(Record::new(None, e.line.clone().into_bytes())),
        }
    }
    for ((topic, p), records) in batches {
        for chunk in records.chunks(2000) {
            log.append(topic, p, chunk.to_vec()).await?;
        }
    }
    println!(
        "produced {} events for {people} people (with duplicates, updates, deletes, relationships and 4 broken records)",
        events.len()
    );
    Ok(events.len() as u64)
}

async fn input_records(log: &dyn Log) -> Result<u64, CliError> {
    let mut n = 0;
    for t in [ENTITIES_TOPIC, RELATIONSHIPS_TOPIC] {
        for p in log.describe_topic(t).await?.partitions {
            n += (p.high_watermark - p.low_watermark) as u64;
        }
    }
    Ok(n)
}

async fn topic_size(log: &dyn Log, topic: &str) -> u64 {
    match log.describe_topic(topic).await {
        Ok(d) => d
            .partitions
            .iter()
            .map(|p| (p.high_watermark - p.low_watermark) as u64)
            .sum(),
        Err(_) => 0,
    }
}

async fn summary(
    log: &dyn Log,
    store: &dyn conductor_engine::store::ProjectionStore,
    names: &[String],
    settings: &Settings,
    topologies: Option<std::path::PathBuf>,
    listen: Option<std::net::SocketAddr>,
) -> Result<(), CliError> {
    let entities = store
        .dump_table(&conductor_processors::entities::entities_table())
        .await?;
    let relationships = store
        .dump_table(&conductor_processors::entities::relationships_table())
        .await?;
    let deleted = entities.iter().filter(|r| r["deleted"] == true).count();
    let dups = entities
        .iter()
        .filter(|r| r["entity_id"].as_str().is_some_and(|s| s.contains("-dup-")))
        .count();
    println!(
        "\nprojection (store: {}):",
        super::run::store_name(settings)
    );
    println!(
        "  entities       {:>7} rows ({deleted} soft-deleted, {dups} duplicate records for ER to find)",
        entities.len()
    );
    println!("  relationships  {:>7} rows", relationships.len());
    for n in names {
        let changes = topic_size(log, &format!("ig.changefeed.{n}")).await;
        if changes > 0 {
            println!("  ig.changefeed.{n:<10} {changes:>7} change events");
        }
        println!(
            "  ig.dlq.{n:<17} {:>7} dead-lettered records",
            topic_size(log, &format!("ig.dlq.{n}")).await
        );
    }
    if names.iter().any(|n| n == "embeddings") {
        embeddings_summary(log, store).await?;
    }
    let search_example = if names.iter().any(|n| n == "vector_index") {
        vector_index_summary(store, settings, topologies.clone()).await?
    } else {
        None
    };
    let er_example = if names.iter().any(|n| n == "er_candidates") {
        er_summary(log, store, settings, topologies.clone()).await?
    } else {
        None
    };
    let lineage_example = if names.iter().any(|n| n == "lineage") {
        lineage_summary(log, settings).await?
    } else {
        None
    };
    let examples = Examples {
        search: search_example,
        er: er_example,
        lineage: lineage_example,
    };
    print_try_next(settings, names, &topologies, listen, &examples)
}

/// The commands `what to try next` suggests, from what the summary found.
struct Examples {
    /// (tenant, text) of a search that finds a duplicate.
    search: Option<(String, String)>,
    /// (tenant, left, right) of a proposed pair.
    er: Option<(String, String, String)>,
    /// The entities table's lineage node.
    lineage: Option<String>,
}

/// The sample events `produce` is shown with, written into the data
/// directory so that the line works wherever the demo ran.
const SAMPLE_EVENTS: &str = include_str!("../../samples/entities.jsonl");

/// Prints what to try next: each line works exactly as printed in the
/// directory the demo ran in (the program as it was invoked, the same data
/// directory, topologies and listen address; no tool but `conductor`).
fn print_try_next(
    settings: &Settings,
    names: &[String],
    topologies: &Option<std::path::PathBuf>,
    listen: Option<std::net::SocketAddr>,
    examples: &Examples,
) -> Result<(), CliError> {
    let samples = settings.data_dir.join("samples");
    std::fs::create_dir_all(&samples)?;
    let sample_file = samples.join("entities.jsonl");
    std::fs::write(&sample_file, SAMPLE_EVENTS)?;
    let program = std::env::args()
        .next()
        .unwrap_or_else(|| "conductor".into());
    let exe = format!(
        "{} --data-dir {}",
        shell_word(&program),
        shell_word(&settings.data_dir.display().to_string())
    );
    // The topologies the demo ran, for the commands that read their config.
    let with_topologies = match topologies {
        Some(dir) => format!(" --topologies {}", shell_word(&dir.display().to_string())),
        None => String::new(),
    };
    let t = &with_topologies;
    let has = |name: &str| names.iter().any(|n| n == name);
    println!("\nwhat to try next:");
    println!(
        "  query the projection:   {exe} sql \"SELECT tenant_id, entity_id, kind, attributes FROM entities LIMIT 5\"{t}"
    );
    println!(
        "  consume the changefeed: {exe} consume --topic ig.changefeed.entities --tenant acme --limit 3"
    );
    println!("  see what was rejected:  {exe} dlq list entities");
    if has("embeddings") {
        println!(
            "  embeddings (vectors only): {exe} sql \"SELECT tenant_id, entity_id, version, model, dims, input_hash FROM entity_embeddings WHERE NOT deleted LIMIT 5\"{t}"
        );
    }
    if let Some((tenant, text)) = &examples.search {
        println!("  search (hybrid):        {exe} search \"{text}\" --tenant {tenant} --k 5{t}");
    }
    if let Some((tenant, left, right)) = &examples.er {
        println!(
            "  ER candidates:          {exe} sql \"SELECT left_id, right_id, score, methods FROM er_candidates WHERE status <> 'retracted' ORDER BY score DESC LIMIT 5\"{t}"
        );
        println!("  why a pair:             {exe} er explain --tenant {tenant} {left} {right}{t}");
    }
    if let Some(node) = &examples.lineage {
        println!(
            "  what built the table:   {exe} lineage {} --direction upstream",
            shell_word(node)
        );
    }
    println!("  topology positions/lag: {exe} topology status{t}");
    let listen = listen.map(|a| format!(" --listen {a}")).unwrap_or_default();
    println!(
        "  produce more and fold:  {exe} produce --topic ig.ingest.entities {} && {exe} run --exit-when-idle{listen}{t}",
        shell_word(&sample_file.display().to_string())
    );
    println!("  start over:             {exe} demo --fresh{listen}{t}");
    Ok(())
}

/// `word` as one POSIX shell word: as it is when that is safe, else in
/// single quotes.
fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=@+,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Conductor's own lineage, as the lineage topology folded the runs this
/// demo reported: jobs, datasets, what the entities table is made from.
/// Returns the entities table's node id.
async fn lineage_summary(log: &dyn Log, settings: &Settings) -> Result<Option<String>, CliError> {
    use conductor_processors::lineage::query::{Direction, LineageGraph};
    let graph = std::sync::RwLock::new(LineageGraph::default());
    crate::lineage_service::read_graph(
        log,
        &conductor_engine::graph::graph_topic("lineage"),
        &mut Default::default(),
        &graph,
    )
    .await?;
    let graph = graph.into_inner().unwrap_or_else(|e| e.into_inner());
    let tenant = &settings.lineage.tenant;
    let (_, store_ns) = crate::run_lineage::namespaces(settings);
    let node = format!("dataset:{store_ns}:entities");
    let Ok(upstream) = graph.lineage(tenant, &node, 20, Direction::Upstream) else {
        println!(
            "
lineage: the entities table is not in the lineage graph yet"
        );
        return Ok(None);
    };
    let (nodes, edges) = graph.size();
    println!(
        "
lineage (the topologies' own runs, folded by the lineage topology):"
    );
    println!("  {nodes} nodes, {edges} edges in tenant {tenant}'s graph");
    let name = |n: &conductor_processors::lineage::query::GraphNode| {
        n.data["name"].as_str().unwrap_or(&n.id).to_string()
    };
    let jobs: Vec<String> = upstream
        .graph
        .iter()
        .filter(|n| n.node_type == "JOB")
        .map(|n| {
            let state = n.data["latestRun"]["state"].as_str().unwrap_or("?");
            format!("{} (run {state})", name(n))
        })
        .collect();
    let sources: Vec<String> = upstream
        .graph
        .iter()
        .filter(|n| n.node_type == "DATASET" && n.id != node)
        .map(name)
        .collect();
    println!(
        "  entities table ← topology {} ← {}",
        jobs.join(", "),
        sources.join(", ")
    );
    Ok(Some(node))
}

/// The embedding figures: vectors written, events emitted, and how often a
/// duplicate record's nearest neighbour (cosine, same tenant) is a record of
/// the same person — what vector search will find.
async fn embeddings_summary(
    log: &dyn Log,
    store: &dyn conductor_engine::store::ProjectionStore,
) -> Result<(), CliError> {
    use std::collections::BTreeMap;
    let rows = store
        .dump_table(&conductor_processors::embeddings::embeddings_table())
        .await?;
    let mut by_tenant: BTreeMap<String, Vec<(String, Vec<f32>)>> = BTreeMap::new();
    let mut model = String::new();
    for r in rows.iter().filter(|r| r["deleted"] != true) {
        let Some(v) = r["vector"].as_array() else {
            continue;
        };
        let v: Vec<f32> = v
            .iter()
            .filter_map(|x| x.as_f64())
            .map(|x| x as f32)
            .collect();
        model = r["model"].as_str().unwrap_or_default().to_string();
        by_tenant
            .entry(r["tenant_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push((r["entity_id"].as_str().unwrap_or_default().to_string(), v));
    }
    let person = |id: &str| id.split("-dup-").next().unwrap_or_default().to_string();
    let (mut dups, mut hits) = (0usize, 0usize);
    for records in by_tenant.values() {
        for (id, v) in records.iter().filter(|(id, _)| id.contains("-dup-")) {
            dups += 1;
            let nearest = records
                .iter()
                .filter(|(other, _)| other != id)
                .map(|(other, w)| {
                    (
                        conductor_processors::embeddings::embedder::cosine(v, w),
                        other,
                    )
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if nearest.is_some_and(|(_, other)| person(other) == person(id)) {
                hits += 1;
            }
        }
    }
    let vectors: usize = by_tenant.values().map(Vec::len).sum();
    println!(
        "  entity_embeddings {:>4} vectors ({model}), {} ig.embeddings events; a duplicate's nearest neighbour is the same person for {hits} of {dups} ({:.1}%)",
        vectors,
        topic_size(log, conductor_processors::embeddings::EMBEDDINGS_TOPIC).await,
        100.0 * hits as f64 / dups.max(1) as f64
    );
    let (calls, tokens, tenants) = embedding_usage(log).await;
    println!(
        "  usage               {calls} embedder calls, {tokens} tokens for {tenants} tenants (UsageRecorded, kind embeddings, on {})",
        conductor_engine::enrich::USAGE_TOPIC
    );
    Ok(())
}

/// The embedding writer's usage records: calls, tokens, tenants.
async fn embedding_usage(log: &dyn Log) -> (usize, i64, usize) {
    let topic = conductor_engine::enrich::USAGE_TOPIC;
    let (mut calls, mut tokens, mut tenants) = (0, 0, std::collections::BTreeSet::new());
    let Ok(d) = log.describe_topic(topic).await else {
        return (0, 0, 0);
    };
    for p in d.partitions {
        let mut offset = p.low_watermark;
        while offset < p.high_watermark {
            let Ok(batch) = log.read(topic, p.partition, offset, 10_000).await else {
                break;
            };
            let Some(last) = batch.last() else { break };
            offset = last.offset + 1;
            for r in &batch {
                if let Ok(e) = conductor_engine::envelope::decode_event(&r.record)
                    && let conductor_schemas::EventData::UsageRecorded(u) = &e.data
                    && u.usage_kind == "embeddings"
                {
                    calls += 1;
                    tokens += u.quantity;
                    tenants.insert(e.meta.tenant.clone());
                }
            }
        }
    }
    (calls, tokens, tenants.len())
}

/// The vector index figures: vectors per tenant, the ANN's recall@10
/// against brute force over the same vectors (up to 200 duplicate records'
/// vectors as queries), and one search for a duplicate record by its name
/// and suburb. Returns that search for the "what to try next" line.
async fn vector_index_summary(
    store: &dyn conductor_engine::store::ProjectionStore,
    settings: &Settings,
    topologies: Option<std::path::PathBuf>,
) -> Result<Option<(String, String)>, CliError> {
    use conductor_processors::vector_index::ann::exact_nearest;
    let index = super::search::restore_index(settings, topologies.clone(), "vector_index").await?;
    let stats = index.state.stats();
    let Some(biggest) = stats.iter().max_by_key(|s| s.vectors) else {
        println!("  vector_index        no vectors indexed");
        return Ok(None);
    };
    let (tenant, model) = (biggest.tenant.clone(), biggest.model.clone());
    let rows = store
        .dump_table(&conductor_processors::embeddings::embeddings_table())
        .await?;
    let vectors: Vec<(String, Vec<f32>)> = rows
        .iter()
        .filter(|r| {
            r["deleted"] != true
                && r["tenant_id"] == tenant.as_str()
                && r["model"] == model.as_str()
        })
        .filter_map(|r| {
            let v = r["vector"].as_array()?;
            let v = v
                .iter()
                .filter_map(|x| x.as_f64())
                .map(|x| x as f32)
                .collect();
            Some((r["entity_id"].as_str()?.to_string(), v))
        })
        .collect();
    let queries: Vec<&(String, Vec<f32>)> = vectors
        .iter()
        .filter(|(id, _)| id.contains("-dup-"))
        .take(200)
        .collect();
    let mut recall = 0.0;
    for (_, q) in &queries {
        let exact = exact_nearest(
            q,
            10,
            vectors.iter().map(|(id, v)| (id.as_str(), v.as_slice())),
        );
        let found = index.search(&tenant, &model, q, 10);
        let overlap = found
            .iter()
            .filter(|h| exact.iter().any(|x| x.entity_id == h.entity_id))
            .count();
        recall += overlap as f64 / exact.len().max(1) as f64;
    }
    let total: usize = stats.iter().map(|s| s.vectors).sum();
    println!(
        "  vector_index   {total:>7} vectors in {} HNSW index(es); recall@10 against brute force over {} queries: {:.3}",
        stats.len(),
        queries.len(),
        recall / queries.len().max(1) as f64
    );
    // One search by what a user would type: a duplicate record's name and suburb.
    let entities = store
        .dump_table(&conductor_processors::entities::entities_table())
        .await?;
    let Some((id, text)) = entities
        .iter()
        .filter(|e| e["tenant_id"] == tenant.as_str() && e["deleted"] != true)
        .filter_map(|e| {
            let id = e["entity_id"].as_str()?;
            let a = &e["attributes"];
            let text = ["given_name", "surname", "suburb"]
                .iter()
                .filter_map(|k| a[*k].as_str())
                .collect::<Vec<_>>()
                .join(" ");
            (id.contains("-dup-") && text.split(' ').count() == 3).then(|| (id.to_string(), text))
        })
        .next()
    else {
        return Ok(None);
    };
    let embeddings = super::search::embeddings_config(settings, topologies, "embeddings")?;
    let shared = std::sync::Arc::new(std::sync::RwLock::new(index));
    let original = id.split("-dup-").next().unwrap_or_default();
    println!(
        "\n`search \"{text}\" --tenant {tenant}` (a duplicate record's name and suburb; its original is {original}), the 3 best by mode:"
    );
    for mode in [
        crate::cli::SearchMode::Keyword,
        crate::cli::SearchMode::Vector,
        crate::cli::SearchMode::Hybrid,
    ] {
        let request = super::search::SearchRequest {
            tenant: tenant.clone(),
            text: text.clone(),
            k: 3,
            mode,
            alpha: 0.7,
            vector_budget: std::time::Duration::from_millis(150),
        };
        let answer =
            super::search::search(Some(shared.clone()), Some(&embeddings), store, &request).await?;
        let hits: Vec<String> = answer
            .hits
            .iter()
            .map(|h| format!("{} {:.3}", h.entity_id, h.score))
            .collect();
        let note = answer
            .fallback
            .map(|f| format!(" (keyword only: {f})"))
            .unwrap_or_default();
        println!("  {:<8} {}{note}", answer.mode, hits.join(", "));
    }
    Ok(Some((tenant, text)))
}

/// The ER figures: standing candidate pairs and how many of the dataset's
/// true duplicate pairs (an original and its `-dup-` records, or two of
/// those) are among them, then the explanation of one true pair. Returns
/// that pair for the "what to try next" line.
async fn er_summary(
    log: &dyn Log,
    store: &dyn conductor_engine::store::ProjectionStore,
    settings: &Settings,
    topologies: Option<std::path::PathBuf>,
) -> Result<Option<(String, String, String)>, CliError> {
    use std::collections::{BTreeMap, BTreeSet};
    let rows = store
        .dump_table(&conductor_processors::er::candidates_table())
        .await?;
    let standing: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["status"] != "retracted").collect();
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let pairs: BTreeSet<(String, String, String)> = standing
        .iter()
        .map(|r| (s(r, "tenant_id"), s(r, "left_id"), s(r, "right_id")))
        .collect();
    // The true pairs among live entities: records of one original.
    let entities = store
        .dump_table(&conductor_processors::entities::entities_table())
        .await?;
    let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for e in entities.iter().filter(|e| e["deleted"] != true) {
        let id = s(e, "entity_id");
        let base = id.split("-dup-").next().unwrap_or_default().to_string();
        groups
            .entry((s(e, "tenant_id"), base))
            .or_default()
            .push(id);
    }
    let mut truth = BTreeSet::new();
    for ((tenant, _), ids) in &groups {
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                let (l, r) = if a < b { (a, b) } else { (b, a) };
                truth.insert((tenant.clone(), l.clone(), r.clone()));
            }
        }
    }
    let found = truth.intersection(&pairs).count();
    let by_ann = standing
        .iter()
        .filter(|r| {
            r["methods"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == "ann"))
        })
        .count();
    println!(
        "  er_candidates  {:>7} standing pairs: {found} of the {} true duplicate pairs ({:.1}% recall), {by_ann} of the pairs found by the embeddings (ANN), {} ig.er.candidates events",
        pairs.len(),
        truth.len(),
        100.0 * found as f64 / truth.len().max(1) as f64,
        topic_size(log, conductor_processors::er::ER_CANDIDATES_TOPIC).await
    );
    let Some((tenant, left, right)) = truth.intersection(&pairs).next().cloned() else {
        return Ok(None);
    };
    match super::er::explain_pair(
        settings,
        "er_candidates",
        topologies,
        &tenant,
        &left,
        &right,
    )
    .await
    {
        Ok(explanation) => {
            println!(
                "
why `er explain` says a pair was proposed:"
            );
            for line in explanation.text().lines() {
                println!("  {line}");
            }
        }
        Err(e) => println!("  (could not explain {left} ↔ {right}: {})", e.message),
    }
    Ok(Some((tenant, left, right)))
}

/// The token secret of the demo: the configured one, else a random one kept
/// in `<data-dir>/jwt.secret` (so tokens stay valid across demo runs).
fn demo_secret(settings: &Settings) -> Result<String, CliError> {
    if let Some(s) = &settings.jwt_secret {
        return Ok(s.clone());
    }
    let path = settings.data_dir.join("jwt.secret");
    if let Ok(s) = std::fs::read_to_string(&path)
        && s.trim().len() >= 32
    {
        return Ok(s.trim().to_string());
    }
    let secret: String = (0..48)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rand::random_range(0..36)]))
        .collect();
    std::fs::write(&path, &secret)?;
    Ok(secret)
}

/// A day-long token for `tenant` with the scope to subscribe.
pub fn demo_token(secret: &str, tenant: &str) -> String {
    use conductor_replay::subscribe::auth::{Claims, SCOPE_CHANGES_READ, issue, now_secs};
    issue(
        secret.as_bytes(),
        &Claims {
            tenant: tenant.into(),
            scopes: vec![SCOPE_CHANGES_READ.into()],
            scope: None,
            exp: now_secs() + 24 * 3600,
            tier: None,
        },
    )
}
