//! End to end with real clients on the production backends: the Python
//! `confluent-kafka` client produces to a Kafka-protocol broker, `conductor
//! run` folds into Postgres, `psql` reads the projection, and confluent-kafka
//! consumes the changefeed. Needs `KAFKA_BOOTSTRAP` and `DATABASE_URL`
//! (`ops/test.sh` provides both); under `CI=true` their absence fails.

mod support;

use std::process::Command;
use support::*;

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-XAtqc", sql])
        .output()
        .expect("psql is installed");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn python(args: &[&str]) -> serde_json::Value {
    let script = repo().join("ops/tests/e2e/kafka_client.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn python_producer_to_kafka_folded_into_postgres_read_with_psql() {
    let (Some(bootstrap), Some(db)) = (
        required_service("KAFKA_BOOTSTRAP"),
        required_service("DATABASE_URL"),
    ) else {
        return;
    };
    let run_id = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let schema = format!("e2e_{run_id}");
    let name = format!("e2e_{run_id}");
    let input = format!("e2e.{run_id}.entities");
    let changes = format!("e2e.{run_id}.changefeed");
    psql(&db, &format!("CREATE SCHEMA {schema}"));
    let sep = if db.contains('?') { '&' } else { '?' };
    let scoped = format!("{db}{sep}options=-csearch_path%3D{schema}");

    let dir = tempfile::tempdir().unwrap();
    let topologies = dir.path().join("topologies");
    std::fs::create_dir(&topologies).unwrap();
    std::fs::write(
        topologies.join("e2e.toml"),
        format!("name = \"{name}\"\nprocessor = \"entities\"\n[sources]\ntopics = [\"{input}\"]\n[changefeed]\ntopic = \"{changes}\"\n[batch]\nlinger_ms = 5\n"),
    )
    .unwrap();
    let kafka = |c: &mut Command| {
        c.args([
            "--log",
            "kafka",
            "--kafka-bootstrap",
            &bootstrap,
            "--store",
            "postgres",
            "--database-url",
            &scoped,
        ]);
    };
    let mut create = conductor(dir.path());
    kafka(&mut create);
    run_ok(create.args(["topic", "create", &input, "--partitions", "3"]));

    let expected = python(&["produce", &bootstrap, &input, "3000"]);

    let mut run = conductor(dir.path());
    kafka(&mut run);
    let (_, log) = run_ok_with_log(
        run.env_remove("CONDUCTOR_LOG_LEVEL")
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--exit-when-idle",
                "--topologies",
            ])
            .arg(&topologies),
    );
    // Catching up reaches the end of every partition: news, not a warning.
    assert_no_dependency_warnings(&log);

    let rows = psql(
        &db,
        &format!("SELECT count(*), sum(version) FROM {schema}.entities"),
    );
    assert_eq!(
        rows,
        format!("{}|{}", expected["entities"], expected["version_sum"]),
        "projection read with psql"
    );
    let offsets = psql(
        &db,
        &format!(
            "SELECT sum(next_offset) FROM {schema}.conductor_offsets WHERE topology = '{name}'"
        ),
    );
    assert_eq!(
        offsets,
        expected["produced"].to_string(),
        "input positions stored with the projection"
    );

    let feed = python(&[
        "consume",
        &bootstrap,
        &changes,
        &expected["changes"].to_string(),
        "60",
    ]);
    assert_eq!(
        feed["records"], expected["changes"],
        "one change event per applied mutation: {feed}"
    );
    assert_eq!(
        feed["unique_change_ids"], expected["changes"],
        "no change event twice: {feed}"
    );

    // A full rebuild from Kafka into a shadow schema equals the live
    // projection, and swapping it in leaves what psql reads unchanged.
    let replay = |verb: &str| {
        let mut c = conductor(dir.path());
        kafka(&mut c);
        run_ok(
            c.args(["replay", verb, "--topology", &name, "--topologies"])
                .arg(&topologies),
        )
    };
    let rebuilt = replay("rebuild");
    assert!(
        rebuilt.contains(&format!("{} records", expected["produced"])),
        "{rebuilt}"
    );
    let verified = replay("verify");
    assert_eq!(verified.matches("EQUAL").count(), 2, "{verified}");
    let swapped = replay("swap");
    assert!(swapped.contains("the shadow is live"), "{swapped}");
    assert_eq!(
        psql(
            &db,
            &format!("SELECT count(*), sum(version) FROM {schema}.entities")
        ),
        rows,
        "the swapped-in rebuild reads the same"
    );
    for s in [
        schema.clone(),
        format!("{schema}_shadow_{name}"),
        format!("{schema}_previous_{name}"),
    ] {
        psql(&db, &format!("DROP SCHEMA IF EXISTS {s} CASCADE"));
    }
}
