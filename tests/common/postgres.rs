//! A real PostgreSQL on a free loopback port, made by `initdb` in a temporary folder (trust
//! authentication, one database `rota`), for the history store's tests. As root it runs as the
//! `postgres` user (PostgreSQL refuses root); the binaries are found on PATH, in
//! /usr/lib/postgresql/*/bin, or in ROTA_TEST_PG_BIN.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PostgresServer {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The user to run as (uid, gid) when this process is root.
    user: Option<(u32, u32)>,
}

fn bindir() -> PathBuf {
    if let Ok(d) = std::env::var("ROTA_TEST_PG_BIN") {
        return PathBuf::from(d);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if d.join("initdb").exists() {
            return d;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server binaries (initdb): install postgresql (apt-get install postgresql) or set ROTA_TEST_PG_BIN")
    })
}

/// The `postgres` user's uid and gid, from /etc/passwd.
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres")).then(|| (f[2].parse().expect("uid"), f[3].parse().expect("gid")))
        })
        .expect("running as root needs a postgres user (the postgresql package makes one)")
}

impl PostgresServer {
    pub fn start() -> PostgresServer {
        let bin = bindir();
        let dir = tempfile::tempdir().expect("tempdir");
        // /proc/self belongs to this process's effective user.
        let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self")) == 0;
        let user = root.then(postgres_user);
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the data folder");
        }
        let mut pg = PostgresServer { port: super::free_port(), bin, dir, child: None, user };
        let mut initdb = pg.command("initdb");
        initdb.args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"]).arg(pg.data());
        let out = initdb.output().expect("initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        pg.spawn();
        pg.psql("postgres", "CREATE DATABASE rota");
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    }

    fn spawn(&mut self) {
        let mut c = self.command("postgres");
        c.arg("-D").arg(self.data());
        c.args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        c.arg("-c").arg(format!("unix_socket_directories={}", self.dir.path().display()));
        c.stderr(Stdio::null());
        self.child = Some(c.spawn().expect("postgres"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.answers() {
            assert!(Instant::now() < deadline, "postgres on port {} did not come up", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-q"])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The URL a node is given.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/rota", self.port)
    }

    /// One SQL statement through psql; its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", db, "-XAtqc", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Immediate shutdown (SIGQUIT: no checkpoint, as after a crash; its backends go with it).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGQUIT);
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}
