//! Finding (or starting) a Neo4j server for the Neo4j tests.
//!
//! * `NEO4J_URI` set (with `NEO4J_USER` / `NEO4J_PASSWORD`, as `ops/test.sh`
//!   exports them): that server must answer, or the test fails.
//! * unset: a throwaway Neo4j is started once per test binary with
//!   `ops/start-neo4j.sh` (Neo4j 5 from Maven Central; needs Java 17 and
//!   Maven) and stopped by a watchdog when the test binary exits.
//! * that fails: under `CI=true` the test fails with the reason; otherwise
//!   it prints a loud notice and returns without testing anything.
#![allow(dead_code)]

use conductor_connectors::neo4j::Neo4jConfig;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

static SERVER: OnceLock<Result<Neo4jConfig, String>> = OnceLock::new();

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs ops/start-neo4j.sh; a watchdog stops the server when this process exits.
fn start_neo4j() -> Result<Neo4jConfig, String> {
    let dir = tempfile::Builder::new()
        .prefix("conductor-neo4j-")
        .tempdir()
        .map_err(|e| format!("creating a data dir: {e}"))?
        .keep();
    let out = Command::new(repo_root().join("ops/start-neo4j.sh"))
        .arg(&dir)
        .output()
        .map_err(|e| format!("running ops/start-neo4j.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ops/start-neo4j.sh failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let vars: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .ok_or_else(|| format!("ops/start-neo4j.sh printed no {k}"))
    };
    let watchdog = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill {pid} 2>/dev/null; sleep 2; rm -rf '{dir}'",
        parent = std::process::id(),
        pid = get("NEO4J_PID")?,
        dir = dir.display()
    );
    Command::new("bash")
        .arg("-c")
        .arg(watchdog)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the Neo4j watchdog: {e}"))?;
    let config = Neo4jConfig::new(
        get("NEO4J_URI")?,
        get("NEO4J_USER")?,
        get("NEO4J_PASSWORD")?,
    );
    eprintln!("started Neo4j at {}, data in {}", config.uri, dir.display());
    Ok(config)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The test server's settings, or `None` (after a loud notice) when there is
/// none and we are not in CI.
pub fn config() -> Option<Neo4jConfig> {
    let found = SERVER.get_or_init(|| Neo4jConfig::from_env().map(Ok).unwrap_or_else(start_neo4j));
    match found {
        Ok(c) => Some(c.clone()),
        Err(why) if in_ci() => panic!("CI=true but no Neo4j for the Neo4j tests: {why}"),
        Err(why) => {
            eprintln!(
                "\n==============================================================\n\
                 SKIPPED: Neo4j test not run: {why}.\n\
                 Set NEO4J_URI (and NEO4J_USER, NEO4J_PASSWORD) or install Java 17 and Maven.\n\
                 ==============================================================\n"
            );
            None
        }
    }
}

/// A label no other test (or earlier run) uses, so tests can share a server.
pub fn unique_label(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}_{}_{nanos}", std::process::id())
}
