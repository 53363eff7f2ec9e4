//! A model change of the embedding writer, as an operator runs it: the
//! live topologies embed with one model (hashed-ngrams, 256 dims); a new
//! stage under its own name records every text under the new model (128
//! dims), `conductor replay rebuild` folds the writer into a shadow under
//! the new configuration (a migration), `verify` compares which rows exist,
//! `swap` makes it live. Then:
//! - the live writer never holds two models: a worker still configured
//!   with the old model refuses to fold, with a message saying what to do;
//! - `conductor run` with the new configuration publishes the shadow's
//!   `EmbeddingComputed` events, each exactly once (a second run adds none);
//! - the vector index builds the new model's graph from them, and
//!   `conductor search` with the new configuration finds entities by it.
//!
//! On SQLite (the embedded default) and on Postgres (schemas change places).

mod support;

use conductor_schemas::EventData;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use support::*;

const OLD_MODEL: &str = "hashed-ngrams-d256@1";
const NEW_MODEL: &str = "hashed-ngrams-d128@1";

/// The shipped topology `name` with 128 dims (and, for the stage, its own name).
fn new_model(name: &str) -> String {
    let shipped =
        std::fs::read_to_string(repo().join("topologies").join(format!("{name}.toml"))).unwrap();
    assert!(
        name == "vector_index" || shipped.contains("dims = 256"),
        "{name} embeds at 256 dims"
    );
    let changed = shipped.replace("dims = 256", "dims = 128");
    if name == "embeddings_enrich" {
        changed.replace(
            "name = \"embeddings_enrich\"",
            "name = \"embeddings_enrich_d128\"",
        )
    } else {
        changed
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Where the projections live: the data dir's SQLite file, or a Postgres
/// schema (read with `psql`).
enum Store {
    Sqlite,
    Postgres { url: String },
}

impl Store {
    fn args(&self) -> Vec<String> {
        match self {
            Store::Sqlite => Vec::new(),
            Store::Postgres { url } => {
                vec![
                    "--store".into(),
                    "postgres".into(),
                    "--database-url".into(),
                    url.clone(),
                ]
            }
        }
    }

    /// (model, rows) of the live `entity_embeddings` rows holding a vector.
    fn live_models(&self, dir: &Path) -> BTreeMap<String, usize> {
        let sql = "SELECT model, count(*) FROM entity_embeddings WHERE vector IS NOT NULL GROUP BY model ORDER BY model";
        let lines = match self {
            Store::Sqlite => sqlite_rows(&dir.join("projections.db"), sql, &[]),
            Store::Postgres { url } => {
                let out = std::process::Command::new("psql")
                    .arg(url)
                    .args(["-XAtq", "-F", "|", "-c", sql])
                    .output()
                    .expect("psql is installed");
                assert!(out.status.success(), "psql: {}", text(&out));
                String::from_utf8(out.stdout)
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect()
            }
        };
        lines
            .iter()
            .map(|l| {
                let (m, n) = l.split_once('|').unwrap();
                (m.to_string(), n.parse().unwrap())
            })
            .collect()
    }
}

fn conductor_in(
    dir: &Path,
    store: &Store,
    topologies: &Path,
    args: &[&str],
) -> std::process::Output {
    conductor(dir)
        .args(args)
        .args(store.args())
        .arg("--topologies")
        .arg(topologies)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn run(dir: &Path, store: &Store, topologies: &Path, only: &[&str]) -> std::process::Output {
    let mut args = vec!["run"];
    for t in only {
        args.extend(["--only", t]);
    }
    args.extend(["--listen", "127.0.0.1:0", "--exit-when-idle"]);
    conductor_in(dir, store, topologies, &args)
}

/// Every `EmbeddingComputed` of `model` on ig.embeddings: (event id,
/// tenant, entity, version, status).
async fn computed(dir: &Path, model: &str) -> Vec<(String, String, String, i64, String)> {
    topic_events(dir, "ig.embeddings")
        .await
        .into_iter()
        .filter_map(|e| match e.data {
            EventData::EmbeddingComputed(c) if c.model == model => Some((
                e.meta.event_id,
                e.meta.tenant,
                c.entity_id,
                c.entity_version,
                c.status,
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_change_is_a_rebuild_verify_swap_that_never_mixes_two_models_on_sqlite() {
    model_change(&Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_change_is_a_rebuild_verify_swap_that_never_mixes_two_models_on_postgres() {
    let db = match std::env::var("DATABASE_URL") {
        Ok(v) if !v.is_empty() => v,
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("DATABASE_URL is not set; ops/test.sh starts Postgres and sets it")
        }
        _ => {
            eprintln!("\n*** NOT RUN: DATABASE_URL is not set (run ops/test.sh) ***\n");
            return;
        }
    };
    let schema = format!("model_change_{}", std::process::id());
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .arg(&db)
            .args(["-XAtqc", sql])
            .output()
            .expect("psql is installed");
        assert!(out.status.success(), "psql: {}", text(&out));
    };
    psql(&format!("CREATE SCHEMA {schema}"));
    let sep = if db.contains('?') { '&' } else { '?' };
    let url = format!("{db}{sep}options=-csearch_path%3D{schema}");
    let outcome = tokio::spawn(async move { model_change(&Store::Postgres { url }).await }).await;
    for s in [
        schema.clone(),
        format!("{schema}_shadow_embeddings"),
        format!("{schema}_previous_embeddings"),
    ] {
        psql(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"));
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn model_change(store: &Store) {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let old = repo().join("topologies");
    let next = base.path().join("next");
    std::fs::create_dir_all(&next).unwrap();
    std::fs::write(
        next.join("embeddings_enrich_d128.toml"),
        new_model("embeddings_enrich"),
    )
    .unwrap();
    for name in ["embeddings", "vector_index"] {
        std::fs::write(next.join(format!("{name}.toml")), new_model(name)).unwrap();
    }
    let input = base.path().join("people.jsonl");
    std::fs::write(&input, demo_entity_workload(600)).unwrap();
    produce_entities(&dir, &input);

    // Live, under the old model.
    let live = ["embeddings_enrich", "embeddings", "vector_index"];
    let out = run(&dir, store, &old, &live);
    assert!(out.status.success(), "{}", text(&out));
    let before = store.live_models(&dir);
    assert_eq!(before.keys().collect::<Vec<_>>(), vec![OLD_MODEL]);
    let entities = before[OLD_MODEL];
    let old_events = computed(&dir, OLD_MODEL).await;

    // 1. The new stage records every text under the new model.
    let out = run(&dir, store, &next, &["embeddings_enrich_d128"]);
    assert!(out.status.success(), "{}", text(&out));
    // Live keeps running meanwhile (it reads those records too, and folds
    // nothing from them: no event of its model asks for them).
    let out = run(&dir, store, &old, &["embeddings"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(computed(&dir, OLD_MODEL).await, old_events);

    // 2. Rebuild under the new configuration: a migration.
    let out = conductor_in(
        &dir,
        store,
        &next,
        &["replay", "rebuild", "--topology", "embeddings"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "a migration: live holds the output of `{OLD_MODEL}`, the shadow `{NEW_MODEL}`"
        )),
        "{}",
        text(&out)
    );
    assert_eq!(
        store.live_models(&dir),
        before,
        "live is untouched by the rebuild"
    );
    assert!(
        computed(&dir, NEW_MODEL).await.is_empty(),
        "nothing is published before the swap"
    );

    // 3. Verify: the same rows exist, at the same versions.
    let out = conductor_in(
        &dir,
        store,
        &next,
        &["replay", "verify", "--topology", "embeddings"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("keys and versions"), "{}", text(&out));
    assert!(text(&out).contains("EQUAL"), "{}", text(&out));

    // 4. Swap.
    let out = conductor_in(
        &dir,
        store,
        &next,
        &["replay", "swap", "--topology", "embeddings"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("the shadow is live"), "{}", text(&out));
    assert_eq!(
        store.live_models(&dir),
        BTreeMap::from([(NEW_MODEL.to_string(), entities)]),
        "every entity has its vector under the new model, and only that"
    );

    // The old configuration can't fold into the new generation.
    let out = run(&dir, store, &old, &["embeddings"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "holds the output of `{NEW_MODEL}`, this configuration makes `{OLD_MODEL}`"
        )) && text(&out).contains("migration"),
        "{}",
        text(&out)
    );
    assert_eq!(store.live_models(&dir).len(), 1, "still one model");

    // 5. The new configuration runs: the shadow's events are published.
    let all = ["embeddings_enrich_d128", "embeddings", "vector_index"];
    let out = run(&dir, store, &next, &all);
    assert!(out.status.success(), "{}", text(&out));
    let published = computed(&dir, NEW_MODEL).await;
    let ids: BTreeSet<_> = published.iter().map(|c| c.0.clone()).collect();
    assert_eq!(ids.len(), published.len(), "each event exactly once");
    let changes: BTreeSet<_> = published
        .iter()
        .map(|(_, t, e, v, s)| (t, e, v, s))
        .collect();
    assert_eq!(
        changes.len(),
        published.len(),
        "no change of an entity's vector is published twice"
    );
    let mut latest: BTreeMap<(String, String), (i64, String)> = BTreeMap::new();
    for (_, tenant, entity, version, status) in &published {
        let slot = latest
            .entry((tenant.clone(), entity.clone()))
            .or_insert((i64::MIN, String::new()));
        if *version > slot.0 {
            *slot = (*version, status.clone());
        }
    }
    let live_now = latest.values().filter(|(_, s)| s == "computed").count();
    assert_eq!(live_now, entities, "the events end in every live vector");
    assert_eq!(
        computed(&dir, OLD_MODEL).await,
        old_events,
        "no old-model event is repeated"
    );

    // The index has the new model's graph, and search uses it.
    let stats: serde_json::Value = serde_json::from_str(&ok(conductor_in(
        &dir,
        store,
        &next,
        &["search", "--stats", "--json"],
    )))
    .unwrap();
    let vectors: usize = stats
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["model"] == NEW_MODEL)
        .map(|s| s["vectors"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(
        vectors, entities,
        "the new model's index holds every vector"
    );
    // An entity's own text (as the template renders it) finds it first.
    let texts = latest_texts(&std::fs::read_to_string(&input).unwrap());
    let ((tenant, entity), (_, query)) = texts
        .iter()
        .filter(|(_, (_, t))| t.is_some())
        .nth(7)
        .unwrap();
    let query = query.as_deref().unwrap();
    let answer: serde_json::Value = serde_json::from_str(&ok(conductor_in(
        &dir,
        store,
        &next,
        &[
            "search", query, "--tenant", tenant, "--mode", "vector", "--json",
        ],
    )))
    .unwrap();
    assert!(answer["fallback"].is_null(), "{answer}");
    assert!(
        answer["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["entity_id"] == entity.as_str() && h["score"].as_f64().unwrap() > 0.999),
        "{entity} is found by its own text under the new model: {answer}"
    );

    // Exactly once: a second run publishes nothing more.
    let out = run(&dir, store, &next, &all);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(computed(&dir, NEW_MODEL).await, published);
}
