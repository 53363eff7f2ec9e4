//! A Kafka broker or a Neo4j of the test's own, to stop and start again (the
//! fault tests; the suite's shared services must not be disturbed). Started
//! with the project's own scripts (`ops/start-kafka.sh`, `ops/start-neo4j.sh`)
//! in a temporary folder; started again with the same folder and port, so it
//! comes back with its data where clients left it.

use super::repo;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Service {
    script: &'static str,
    dir: tempfile::TempDir,
    port: Option<u16>,
    pid: Option<u32>,
    /// What the script printed (`KAFKA_BOOTSTRAP`, `NEO4J_URI`, …).
    pub env: BTreeMap<String, String>,
}

impl Service {
    /// Apache Kafka (KRaft, one node).
    pub fn kafka() -> Option<Service> {
        Self::start("start-kafka.sh")
    }

    /// Neo4j 5 with Bolt and auth.
    pub fn neo4j() -> Option<Service> {
        Self::start("start-neo4j.sh")
    }

    /// `None` (with a note) outside CI when Java is missing; under `CI=true`
    /// a service that can't start fails the test.
    fn start(script: &'static str) -> Option<Service> {
        let java = Command::new("sh")
            .args(["-c", "command -v \"${JAVA_HOME:+$JAVA_HOME/bin/}java\""])
            .status()
            .is_ok_and(|s| s.success());
        if !java {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but java is not installed (ops/test.sh installs it)"
            );
            eprintln!("\n*** NOT RUN: java is not installed ***\n");
            return None;
        }
        let mut service = Service {
            script,
            dir: tempfile::tempdir().unwrap(),
            port: None,
            pid: None,
            env: BTreeMap::new(),
        };
        service.start_again();
        Some(service)
    }

    /// Starts the (stopped) service again, on the same folder and port.
    pub fn start_again(&mut self) {
        let mut cmd = Command::new(repo().join("ops").join(self.script));
        cmd.arg(self.dir.path().join("service"));
        if let Some(port) = self.port {
            cmd.arg(port.to_string());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{} failed: {}",
            self.script,
            String::from_utf8_lossy(&out.stderr)
        );
        self.env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.pid = self
            .env
            .iter()
            .find(|(k, _)| k.ends_with("_PID"))
            .and_then(|(_, v)| v.parse().ok());
        let address = self
            .env
            .get("KAFKA_BOOTSTRAP")
            .or_else(|| self.env.get("NEO4J_URI"))
            .cloned()
            .unwrap_or_default();
        self.port = address.rsplit(':').next().and_then(|p| p.parse().ok());
        assert!(
            self.pid.is_some() && self.port.is_some(),
            "{} printed {:?}",
            self.script,
            self.env
        );
    }

    /// Sends `signal` (`TERM`, `KILL`) and waits until the process is gone.
    pub fn stop(&mut self, signal: &str) {
        let Some(pid) = self.pid.take() else { return };
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status();
        let started = Instant::now();
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            // A zombie of ours would stay in /proc: the script's child is
            // not our child, so it is reaped by init.
            if std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop("KILL");
    }
}
