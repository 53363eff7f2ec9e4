//! Helpers shared by the `conductor` end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod fold_run;
pub mod postgres_server;
pub mod service;

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_conductor")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A `conductor` command with a data dir and a fixed cursor key.
pub fn conductor(data: &Path) -> Command {
    conductor_via(&[], data)
}

/// [`conductor`] run by `wrapper` (`["fiu-run", "-x"]`: under libfiu).
pub fn conductor_via(wrapper: &[&str], data: &Path) -> Command {
    let mut c = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(exe());
            c
        }
        None => Command::new(exe()),
    };
    c.arg("--data-dir").arg(data);
    for var in [
        "CONDUCTOR_LOG",
        "CONDUCTOR_STORE",
        "CONDUCTOR_DATABASE_URL",
        "CONDUCTOR_KAFKA_BOOTSTRAP",
        "CONDUCTOR_CONFIG",
    ] {
        c.env_remove(var);
    }
    c.env("CONDUCTOR_CURSOR_KEY", "test-cursor-key-0123456789");
    c
}

pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn run_ok(cmd: &mut Command) -> String {
    ok(cmd.stdin(Stdio::null()).output().unwrap())
}

/// [`run_ok`], also returning stderr (the log).
pub fn run_ok_with_log(cmd: &mut Command) -> (String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    (ok(out), log)
}

/// Asserts that `output` holds no warning of a dependency — sqlx's
/// slow-statement and slow-acquire notices, librdkafka's end-of-partition
/// events — only Conductor's own (tracing's lines read `<time>  WARN <target>: …`).
pub fn assert_no_dependency_warnings(output: &str) {
    for line in output.lines() {
        assert!(!line.contains("sqlx"), "a sqlx notice: {line}");
        if let Some((_, rest)) = line.split_once(" WARN ") {
            assert!(
                rest.starts_with("conductor"),
                "a dependency's warning: {line}"
            );
        }
    }
}

/// A deterministic workload for the `entities` topology: `n` events over
/// `n / 5` entities with versions arriving out of order, replays, deletes and
/// relationships, plus one event in every thousand the topology must dead-letter.
pub fn entity_workload(n: usize) -> String {
    let mut out = String::with_capacity(n * 220);
    let mut x: u64 = 0x5eed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let entities = (n / 5).max(1) as u64;
    for i in 0..n {
        let r = next();
        let tenant = if r % 3 == 0 { "globex" } else { "acme" };
        let id = r / 3 % entities;
        let version = (i as u64 / entities) as i64 + (r % 4) as i64 - 1; // mostly rising, sometimes older
        let line = match i % 1000 {
            // Valid by schema, wrong for the topology: dead-lettered.
            999 => format!(
                r#"{{"tenant":"{tenant}","kind":"UsageRecorded","subject":"m{i}","occurred_at":"2026-02-01T12:00:00Z","data":{{"usage_kind":"events","quantity":{i}}}}}"#
            ),
            _ if r % 17 == 0 => format!(
                r#"{{"tenant":"{tenant}","kind":"EntityDeleted","subject":"e{id}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"Person","version":{}}}}}"#,
                version.max(0)
            ),
            _ if r % 5 == 0 => format!(
                r#"{{"tenant":"{tenant}","kind":"RelationshipUpserted","subject":"r{id}","occurred_at":"2026-02-01T12:00:00Z","data":{{"rel_id":"r{id}","src":"e{id}","dst":"e{}","rel_type":"KNOWS","version":{},"attributes":{{"w":{}}}}}}}"#,
                (id + 1) % entities,
                version.max(0),
                r % 100
            ),
            _ => format!(
                r#"{{"tenant":"{tenant}","kind":"EntityUpserted","subject":"e{id}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"Person","version":{},"attributes":{{"name":"n{}","i":{i}}}}}}}"#,
                version.max(0),
                r % 1000
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Starts `conductor run --listen 127.0.0.1:0` on `data` (from the repo, so
/// it finds `topologies/`) with extra environment, and returns the child and
/// the address it printed.
pub fn spawn_run(data: &Path, env: &[(&str, &str)]) -> (ServerProcess, String) {
    spawn_server(data, "run", env)
}

/// Starts `conductor <verb> --listen 127.0.0.1:0` (`run` or `serve`) on
/// `data` from the repo with extra environment; the child and its address.
pub fn spawn_server(data: &Path, verb: &str, env: &[(&str, &str)]) -> (ServerProcess, String) {
    spawn_server_with(data, &[verb], env)
}

/// Starts `conductor ARGS… --listen 127.0.0.1:0` (`["run", "--only",
/// "lineage"]`) on `data` from the repo with extra environment; the child
/// and its address.
pub fn spawn_server_with(
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ServerProcess, String) {
    let mut cmd = conductor(data);
    cmd.current_dir(repo());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).args(["--listen", "127.0.0.1:0"]);
    spawn_with_address(&mut cmd)
}

/// Spawns `cmd` (a `conductor run|serve … --listen 127.0.0.1:0`) and returns
/// the child and the address its first line names. Stderr is kept read, so
/// the server's later lines neither fail nor block it.
pub fn spawn_with_address(cmd: &mut Command) -> (ServerProcess, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    // Log lines may come first (CONDUCTOR_LOG_LEVEL=info): the address is on
    // the line that names it.
    let mut seen = String::new();
    let addr = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("the server exited without printing its address: {seen}");
        }
        if let Some(addr) = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
        {
            break addr.to_string();
        }
        seen.push_str(&line);
    };
    // The rest of the log is kept (the last 256 KiB, for assertions) and,
    // with CONDUCTOR_TEST_LOGS=DIR, written to DIR/<pid>.log.
    let mut file = std::env::var_os("CONDUCTOR_TEST_LOGS").map(|dir| {
        std::fs::File::create(Path::new(&dir).join(format!("{}.log", child.id()))).unwrap()
    });
    let kept = std::sync::Arc::new(std::sync::Mutex::new(seen));
    let sink = kept.clone();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(f) = file.as_mut() {
                let _ = f.write_all(line.as_bytes());
            }
            let mut kept = sink.lock().unwrap_or_else(|e| e.into_inner());
            kept.push_str(&line);
            if kept.len() > 256 * 1024 {
                let cut = kept.len() - 128 * 1024;
                let cut = (cut..kept.len())
                    .find(|i| kept.is_char_boundary(*i))
                    .unwrap_or(0);
                kept.drain(..cut);
            }
            line.clear();
        }
    });
    (
        ServerProcess {
            child,
            log: Some(kept),
        },
        addr,
    )
}

/// A server child process that is killed when dropped, so a failing
/// assertion doesn't leave it running (and holding its port and data dir)
/// after the test. Derefs to the `Child` for `id()`, `wait()` and friends.
pub struct ServerProcess {
    child: std::process::Child,
    /// Its stderr so far, when [`spawn_with_address`] started it.
    log: Option<std::sync::Arc<std::sync::Mutex<String>>>,
}

impl ServerProcess {
    /// Takes over any child process, to have it killed on drop.
    pub fn new(child: std::process::Child) -> Self {
        ServerProcess { child, log: None }
    }

    /// What it wrote to stderr so far (the last 128–256 KiB).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }
}

impl std::ops::Deref for ServerProcess {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.child
    }
}

impl std::ops::DerefMut for ServerProcess {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.child
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Already reaped after a clean wait(): kill then fails harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A size from the environment, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The first `n` valid entity events of the demo generator (people,
/// typo'd duplicates, updates, deletes), as JSON lines.
pub fn demo_entity_workload(n: usize) -> String {
    let mut people = n;
    loop {
        let lines: Vec<String> = conductor_processors::demo_data::generate(people, 0xC0FFEE)
            .into_iter()
            .filter(|e| e.topic == conductor_processors::demo_data::ENTITIES_TOPIC)
            .filter(|e| conductor_schemas::codec::decode_json(e.line.as_bytes(), None).is_ok())
            .map(|e| e.line)
            .take(n)
            .collect();
        if lines.len() == n {
            return lines.join("\n") + "\n";
        }
        people += n / 2 + 1;
    }
}

/// Creates `ig.ingest.entities` (3 partitions) in `dir` and produces `input` to it.
pub fn produce_entities(dir: &Path, input: &Path) {
    run_ok(conductor(dir).args(["topic", "create", "ig.ingest.entities", "--partitions", "3"]));
    run_ok(
        conductor(dir)
            .args(["produce", "--topic", "ig.ingest.entities"])
            .arg(input),
    );
}

/// `conductor run --only T… --exit-when-idle` on `dir`; asserts it
/// succeeded and returns its stderr.
pub fn run_topologies_to_end(dir: &Path, topologies: &[&str]) -> String {
    let mut command = conductor(dir);
    command.arg("run");
    for t in topologies {
        command.args(["--only", t]);
    }
    let out = command
        .args(["--listen", "127.0.0.1:0", "--exit-when-idle"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "conductor run failed: {stderr}");
    stderr
}

/// The rows `sql` gives on the SQLite file `db`, read by Python's sqlite3
/// (a client nobody on the team wrote): one line per row, its columns as
/// Python's `str` joined by `|`; `params` bound to the `?`s.
pub fn sqlite_rows(db: &Path, sql: &str, params: &[&str]) -> Vec<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); [print('|'.join(str(x) for x in r)) for r in c.execute(sys.argv[2], sys.argv[3:])]",
        ])
        .arg(db)
        .arg(sql)
        .args(params)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Every record of `topic` in the file log of the data dir `dir`, in
/// partition order; none when the topic was never created.
pub async fn topic_records(dir: &Path, topic: &str) -> Vec<conductor_engine::log::Record> {
    use conductor_engine::log::Log;
    use conductor_engine::log::file::{FileLog, FileLogOptions};
    let log = FileLog::open_read_only(dir.join("log"), FileLogOptions::default()).unwrap();
    let mut out = Vec::new();
    let Ok(d) = log.describe_topic(topic).await else {
        return out;
    };
    for p in d.partitions {
        for r in log.read(topic, p.partition, 0, usize::MAX).await.unwrap() {
            out.push(r.record);
        }
    }
    out
}

/// Every event of `topic` (JSON-encoded, as `conductor run` writes on the
/// file log), decoded.
pub async fn topic_events(dir: &Path, topic: &str) -> Vec<conductor_schemas::Event> {
    topic_records(dir, topic)
        .await
        .iter()
        .map(|r| conductor_schemas::codec::decode_json(&r.value, None).unwrap())
        .collect()
}

/// Each entity's latest version in a JSON-lines workload, with its text as
/// the embedding writer's default template renders it (`None`: deleted):
/// (tenant, entity id) → (version, text).
pub fn latest_texts(
    jsonl: &str,
) -> std::collections::BTreeMap<(String, String), (i64, Option<String>)> {
    use conductor_schemas::EventData;
    let template = conductor_processors::embeddings::text::Template::parse(
        &conductor_processors::embeddings::config::EmbeddingsConfig::default().template,
    )
    .unwrap();
    let mut latest = std::collections::BTreeMap::new();
    for line in jsonl.lines() {
        let e = conductor_schemas::codec::decode_json(line.as_bytes(), None).unwrap();
        let (version, text) = match &e.data {
            EventData::EntityUpserted(u) => (u.version, Some(template.render(&u.attributes))),
            EventData::EntityDeleted(d) => (d.version, None),
            _ => continue,
        };
        let slot = latest
            .entry((e.meta.tenant.clone(), e.meta.subject.clone()))
            .or_insert((i64::MIN, None));
        if version > slot.0 {
            *slot = (version, text);
        }
    }
    latest
}

/// A service address ops/test.sh sets (`KAFKA_BOOTSTRAP`, `DATABASE_URL`…):
/// `None` with a NOT RUN note outside CI; under `CI=true` its absence fails.
pub fn required_service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{var} is not set; ops/test.sh starts the services and sets it")
        }
        _ => {
            eprintln!(
                "\n*** NOT RUN: {var} is not set (run ops/test.sh, which starts the services) ***\n"
            );
            None
        }
    }
}

/// The Neo4j ops/test.sh starts (`NEO4J_URI`, `NEO4J_USER`,
/// `NEO4J_PASSWORD`), as [`required_service`] treats a missing one.
pub fn neo4j_config() -> Option<conductor_connectors::neo4j::Neo4jConfig> {
    required_service("NEO4J_URI").map(|uri| {
        conductor_connectors::neo4j::Neo4jConfig::new(
            uri,
            std::env::var("NEO4J_USER").unwrap_or_else(|_| "neo4j".into()),
            std::env::var("NEO4J_PASSWORD").unwrap_or_default(),
        )
    })
}

/// `conductor sql 'SELECT * FROM table' --format json --topologies DIR` on
/// `data`: one object per row.
pub fn sql_rows(data: &Path, topologies: &Path, table: &str) -> Vec<serde_json::Value> {
    let out = run_ok(
        conductor(data)
            .args([
                "sql",
                &format!("SELECT * FROM {table}"),
                "--format",
                "json",
                "--topologies",
            ])
            .arg(topologies),
    );
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A bearer token (HS256, five minutes) for `tenant` with `scopes`.
pub fn bearer_token(secret: &str, tenant: &str, scopes: &[&str]) -> String {
    use conductor_replay::subscribe::auth::{Claims, issue, now_secs};
    issue(
        secret.as_bytes(),
        &Claims {
            tenant: tenant.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            scope: None,
            exp: now_secs() + 300,
            tier: None,
        },
    )
}

/// GET `path` from `addr` (`127.0.0.1:PORT`): the status code and body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
