//! Disk faults under `conductor run`, as an operator meets them:
//! - the file log's fsync fails (libfiu's `fiu-run -x`, switched on with
//!   `fiu-ctrl` while the topology folds): the process stops with an error
//!   naming the file — no retry-and-pretend — and a restart ends exactly
//!   where a straight run does (the store is Postgres here, so that only the
//!   log's own fsyncs are hit);
//! - the SQLite store's disk fills up (a real tmpfs): the topology waits,
//!   saying why (`waiting_on: sqlite`, "database or disk is full"), and
//!   resumes by itself once space is freed, ending where a straight run does.
//!
//! `engine/tests/file_log_disk_faults.rs` checks the file log itself against
//! each failing call. Size: `FAULT_EVENTS` (default 20000).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::fold_run::*;
use support::*;

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this test can do what it needs (`what`), failing under CI when not.
fn can(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {what}"
        );
        eprintln!("\n*** NOT RUN: {what} ***\n");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_of_the_file_log_stops_conductor_run_and_a_restart_ends_exactly_once() {
    if !can(
        installed("fiu-run") && installed("fiu-ctrl"),
        "fiu-run is not installed (apt-get install fiu-utils; ops/test.sh does it as root)",
    ) {
        return;
    }
    let Some(url) = postgres().await else { return };
    let tmp = tempfile::tempdir().unwrap();
    let base = Store::Postgres { url };
    let pair = FaultPair::prepare(
        tmp.path(),
        env_or("FAULT_EVENTS", 20_000),
        base.clone(),
        base,
        LogBackend::File,
        "",
    )
    .await;
    let (faulted, total) = (&pair.faulted, pair.total);
    let faulted_dir = faulted.dir.clone();

    // `conductor run` under libfiu (no failure point enabled yet).
    let mut cmd = faulted.cmd_via(&["fiu-run", "-x"]);
    cmd.args(["run", "--listen", "127.0.0.1:0", "--topologies"])
        .arg(&faulted.topologies);
    let (mut child, _addr) = spawn_with_address(&mut cmd);
    faulted
        .wait_for_progress(total / 5, Duration::from_secs(120))
        .await;
    let enabled = Command::new("fiu-ctrl")
        .args(["-c", "enable name=posix/io/sync/fdatasync,failinfo=5"])
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(enabled.success(), "fiu-ctrl could not reach conductor run");
    // It stops by itself, with the error.
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "conductor run went on after its log failed to fsync"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!exit.success(), "it exits with an error: {exit}");
    let stopped_at = faulted.progress().await;
    assert!(
        stopped_at < total,
        "the fault landed while folding ({stopped_at}/{total})"
    );

    // What it said: the failed call and the file, once, as an error.
    std::thread::sleep(Duration::from_millis(200)); // the last lines of its stderr
    let said = child.log();
    assert!(
        said.contains("could not fsync") && said.contains(faulted_dir.to_str().unwrap()),
        "the error names the file and the call: {said}"
    );
    assert!(said.contains("relay stopped"), "{said}");

    // A restart on a healthy disk recovers everything acknowledged and ends
    // where the straight run did.
    let restarted = faulted
        .run_command()
        .arg("--exit-when-idle")
        .status()
        .unwrap();
    assert!(restarted.success(), "the restart failed");
    let after = pair
        .assert_same_end("after a failed fsync and a restart")
        .await;
    eprintln!(
        "fsync failed at {stopped_at}/{total} inputs; restart: {} changes as the straight run",
        after.change_ids.len()
    );
}

/// Mounts a tmpfs of `megabytes` at `at`; unmounted on drop.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(at: &'a Path, megabytes: u32) -> Tmpfs<'a> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t tmpfs failed");
        Tmpfs(at)
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_sqlite_store_is_waited_out_and_the_fold_ends_exactly_once() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !can(root, "mounting the test's tmpfs needs root") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let _tmpfs = Tmpfs::mount(&disk, 64);
    // The faulted run's store on the small disk, its log on the big one.
    let pair = FaultPair::prepare(
        tmp.path(),
        env_or("FAULT_EVENTS", 20_000),
        Store::Sqlite,
        Store::SqliteFile(disk.join("projections.db")),
        LogBackend::File,
        "",
    )
    .await;
    let (faulted, total) = (&pair.faulted, pair.total);
    let (mut child, addr) = faulted.spawn_serving();
    faulted
        .wait_for_progress(total / 5, Duration::from_secs(120))
        .await;
    // Fill the disk: the next commits find no room.
    let filler = disk.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let full = Instant::now();
    let mut seen = None;
    while full.elapsed() < Duration::from_secs(30) && seen.is_none() {
        let (_, body) = http_get(&addr, &format!("/v1/topologies/{}", faulted.topology));
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_ne!(
            s["state"], "failed",
            "the topology gave up on a full disk: {s}"
        );
        if s["waiting_on"] == "sqlite" {
            seen = Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = seen.expect("with the disk full the topology waits on sqlite");
    assert!(
        s["error"].as_str().unwrap_or("").contains("full"),
        "the status says why: {s}"
    );
    let waiting_at = faulted.progress_if_reachable().await.unwrap_or_default();
    assert!(waiting_at < total, "the disk filled while folding");
    // Space back: it resumes by itself and finishes.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while faulted.progress_if_reachable().await.unwrap_or(0) < total {
        if Instant::now() > deadline {
            let status = faulted.status(&addr);
            let log = child.log();
            panic!(
                "it did not resume once space was freed: {status}\n{}",
                &log[log.len().saturating_sub(4000)..]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pair.wait_for_changefeed(Duration::from_secs(60)).await;
    stop_cleanly(&mut child);
    let after = pair.assert_same_end("through a full disk").await;
    eprintln!(
        "disk full at {waiting_at}/{total} inputs, resumed once freed; {} changes as the straight run",
        after.change_ids.len()
    );
}
