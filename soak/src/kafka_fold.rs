//! `kafka-fold`: `conductor run --log kafka` folding into Postgres, per
//! broker and exactly-once mode, next to the same fold on the file log in
//! the same run (the baseline).
//!
//! Each target gets the same workload (`conductor produce` of N entity
//! events into a fresh 3-partition input topic), a topology of its own
//! name (so its own changefeed, DLQ, writer id and offsets) and a Postgres
//! schema of its own; then `conductor run --exit-when-idle` folds it, and
//! the stored offsets and the projection's row count are checked before the
//! time counts. Reported per target: produce and fold events/s and the fold
//! rate as a ratio of the file log's. `soak/kafka-fold.sh` starts the
//! brokers (Apache Kafka from Maven Central, tansu) and runs this.

use crate::report;
use crate::workload::entity_json_lines;
use conductor_connectors::PostgresStore;
use conductor_engine::store::ProjectionStore;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const SHIPPED_TOPOLOGY: &str = include_str!("../../topologies/entities.toml");

#[derive(clap::Args)]
pub struct Args {
    /// Postgres URL [env DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test].
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// A Kafka target as LABEL,MODE,BOOTSTRAP (MODE: progress | transactions),
    /// e.g. `apache-kafka,transactions,127.0.0.1:9092`; repeat for more.
    #[arg(long = "kafka", value_name = "LABEL,MODE,BOOTSTRAP", required = true)]
    targets: Vec<String>,
    /// Events per target.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Distinct entities (keys) they update.
    #[arg(long, default_value_t = 50_000)]
    entities: usize,
    /// The `conductor` binary [default: the one beside this binary].
    #[arg(long)]
    conductor: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/soak-reports/kafka-fold.json")]
    report: PathBuf,
}

/// Where one fold runs.
struct Target {
    label: String,
    /// `None`: the file log (the baseline).
    kafka: Option<(String, String)>,
}

impl Target {
    fn parse(spec: &str) -> Result<Target, String> {
        let parts: Vec<&str> = spec.splitn(3, ',').collect();
        let [label, mode, bootstrap] = parts[..] else {
            return Err(format!(
                "--kafka `{spec}`: expected LABEL,MODE,BOOTSTRAP, e.g. apache-kafka,progress,127.0.0.1:9092"
            ));
        };
        if !matches!(mode, "progress" | "transactions") {
            return Err(format!(
                "--kafka `{spec}`: MODE must be progress or transactions, got `{mode}`"
            ));
        }
        Ok(Target {
            label: format!("{label} ({mode})"),
            kafka: Some((mode.to_string(), bootstrap.to_string())),
        })
    }

    /// A short identifier for topic, topology and schema names.
    fn slug(&self, index: usize) -> String {
        let mode = match &self.kafka {
            None => "file",
            Some((mode, _)) => &mode[..4],
        };
        format!("kf{}_{index}_{mode}", std::process::id())
    }
}

struct Measured {
    produce_secs: f64,
    fold_secs: f64,
    /// Rows of the `entities` projection afterwards (equal across targets).
    rows: i64,
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn fold_one(
    args: &Args,
    conductor: &Path,
    target: &Target,
    index: usize,
    workload: &Path,
) -> Result<Measured, String> {
    let slug = target.slug(index);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let topologies = dir.path().join("topologies");
    std::fs::create_dir_all(&topologies).map_err(|e| e.to_string())?;
    let input = format!("soak.{slug}.entities");
    let mut topology: toml::Table = toml::from_str(SHIPPED_TOPOLOGY).map_err(|e| e.to_string())?;
    topology.insert("name".into(), slug.clone().into());
    topology["sources"]
        .as_table_mut()
        .ok_or("the shipped topology has no [sources]")?
        .insert("topics".into(), vec![input.clone()].into());
    std::fs::write(
        topologies.join(format!("{slug}.toml")),
        toml::to_string(&topology).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;

    let schema = format!("soak_{slug}");
    let store = PostgresStore::connect(&args.database_url, Some(&schema))
        .await
        .map_err(|e| e.to_string())?;
    let sep = if args.database_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let scoped = format!("{}{sep}options=-csearch_path%3D{schema}", args.database_url);
    let cmd = || {
        let mut c = Command::new(conductor);
        c.arg("--data-dir").arg(dir.path()).args([
            "--store",
            "postgres",
            "--database-url",
            &scoped,
        ]);
        match &target.kafka {
            None => c.args(["--log", "file"]),
            Some((mode, bootstrap)) => c
                .args(["--log", "kafka", "--kafka-bootstrap", bootstrap])
                .env("CONDUCTOR_KAFKA_EXACTLY_ONCE", mode),
        };
        c.env_remove("CONDUCTOR_CONFIG");
        c
    };
    run(
        cmd().args(["topic", "create", &input, "--partitions", "3"]),
        "topic create",
    )?;
    let started = Instant::now();
    run(
        cmd().args(["produce", "--topic", &input]).arg(workload),
        "produce",
    )?;
    let produce_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    run(
        cmd()
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--exit-when-idle",
                "--topologies",
            ])
            .arg(&topologies),
        "conductor run",
    )?;
    let fold_secs = started.elapsed().as_secs_f64();

    // The time counts only if everything was folded.
    let folded: i64 = store
        .load_offsets(&slug)
        .await
        .map_err(|e| e.to_string())?
        .values()
        .sum();
    if folded != args.events as i64 {
        return Err(format!(
            "{}: the run stored positions for {folded} of {} events",
            target.label, args.events
        ));
    }
    // `schema` is made of digits, letters and underscores (see `slug`).
    let pool = sqlx::PgPool::connect(&args.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.entities"
    )))
    .fetch_one(&pool)
    .await
    .map_err(|e| e.to_string())?;
    pool.close().await;
    for s in [
        schema.clone(),
        format!("{schema}_shadow_{slug}"),
        format!("{schema}_previous_{slug}"),
    ] {
        if let Ok(store) = PostgresStore::connect(&args.database_url, Some(&s)).await {
            let _ = store.drop_schema().await;
        }
    }
    Ok(Measured {
        produce_secs,
        fold_secs,
        rows,
    })
}

pub async fn run_scenario(args: Args) -> Result<(), String> {
    let mut targets = vec![Target {
        label: "file log (baseline)".into(),
        kafka: None,
    }];
    for spec in &args.targets {
        targets.push(Target::parse(spec)?);
    }
    let conductor = match &args.conductor {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("conductor"),
    };
    if !conductor.exists() {
        return Err(format!(
            "no conductor binary at {} (build it: cargo build --release -p conductor, or pass --conductor)",
            conductor.display()
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let workload = dir.path().join("workload.jsonl");
    let mut text = String::with_capacity(args.events * 220);
    for line in entity_json_lines(args.events, args.entities) {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&workload, text).map_err(|e| e.to_string())?;

    println!(
        "kafka-fold: {} events over {} entities per target, `conductor run` into Postgres",
        args.events, args.entities
    );
    let mut results: Vec<(&Target, Measured, f64)> = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let m = fold_one(&args, &conductor, target, i, &workload).await?;
        if let Some((first, baseline, _)) = results.first()
            && m.rows != baseline.rows
        {
            return Err(format!(
                "{}: {} entities projected, {} on {}",
                target.label, m.rows, baseline.rows, first.label
            ));
        }
        let fold_rate = args.events as f64 / m.fold_secs;
        println!(
            "  {:<32} produce {:>8.0} ev/s   fold {:>8.0} ev/s ({:.1} s)",
            target.label,
            args.events as f64 / m.produce_secs,
            fold_rate,
            m.fold_secs
        );
        results.push((target, m, fold_rate));
    }
    let baseline = results[0].2;
    println!("fold rate relative to the file log:");
    let mut rows = Vec::new();
    for (target, m, rate) in &results {
        println!("  {:<32} {:.2}", target.label, rate / baseline);
        rows.push(serde_json::json!({
            "target": target.label,
            "exactly_once": target.kafka.as_ref().map(|(m, _)| m.clone()),
            "produce_secs": m.produce_secs,
            "produce_events_per_sec": args.events as f64 / m.produce_secs,
            "fold_secs": m.fold_secs,
            "fold_events_per_sec": rate,
            "fold_rate_vs_file_log": rate / baseline,
        }));
    }
    let r = serde_json::json!({
        "scenario": "kafka-fold",
        "events": args.events,
        "entities": args.entities,
        "targets": rows,
    });
    report::write(&args.report, &r)?;
    println!("report: {}", args.report.display());
    Ok(())
}
