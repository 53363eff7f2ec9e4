//! A Postgres server of the test's own, to restart, stop and cut the
//! connections of (the fault tests; the suite's shared server must not be
//! disturbed). A cluster made with `initdb` in a temporary directory, on a
//! free loopback port, run as the `postgres` user when the tests run as root
//! (Postgres refuses to run as root). `ops/test.sh` makes sure `initdb` is
//! installed; under `CI=true` its absence fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PostgresServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

/// The folder of `initdb`: on PATH, else Debian's newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_bin() -> Option<PathBuf> {
    let on_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(initdb) = on_path {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        return real.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PostgresServer {
    /// A new cluster with a database `test`, started. `None` (with a note)
    /// outside CI when Postgres is not installed.
    pub fn start() -> Option<PostgresServer> {
        let Some(bin) = find_bin() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but initdb is not installed (apt-get install postgresql; ops/test.sh does it as root)"
            );
            eprintln!("\n*** NOT RUN: initdb is not installed (apt-get install postgresql) ***\n");
            return None;
        };
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = tempfile::tempdir().unwrap();
        if as_postgres {
            let chown = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(chown.success(), "chown of the cluster's folder failed");
        }
        let server = PostgresServer {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        server.run(
            "initdb",
            &["-D", &server.data(), "-A", "trust", "-U", "postgres"],
        );
        server.start_again();
        server.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &server.port.to_string(),
                "-U",
                "postgres",
                "test",
            ],
        );
        Some(server)
    }

    /// The URL of its database `test`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// One of the server's programs, run as `postgres` when root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        }
    }

    /// Runs one of the server's programs and panics with its output when it
    /// fails.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pg_ctl(&self, args: &[&str]) {
        let (data, log) = (
            self.data(),
            self.dir.path().join("server.log").display().to_string(),
        );
        let mut all = vec!["-D", data.as_str(), "-l", log.as_str(), "-w"];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        )
    }

    /// Starts the (stopped) server on its port again.
    pub fn start_again(&self) {
        let options = self.options();
        self.pg_ctl(&["-o", &options, "start"]);
    }

    /// `pg_ctl stop -m MODE` (`fast`: clients are disconnected, a clean
    /// shutdown; `immediate`: no shutdown checkpoint, crash recovery on the
    /// next start).
    pub fn stop(&self, mode: &str) {
        self.pg_ctl(&["-m", mode, "stop"]);
    }

    /// `pg_ctl restart -m MODE`.
    pub fn restart(&self, mode: &str) {
        let options = self.options();
        self.pg_ctl(&["-m", mode, "-o", &options, "restart"]);
    }

    /// `pg_terminate_backend` of every other connection to `test` (the
    /// worker's and the relay's, whatever they are doing); how many.
    pub fn terminate_backends(&self) -> usize {
        let out = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "test",
                "-Atc",
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = 'test' AND pid <> pg_backend_pid()",
            ],
        );
        out.trim().parse().unwrap_or(0)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}
