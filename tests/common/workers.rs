//! External worker processes for the tests: the Python SDK (`sdk/python`) installed into a
//! temporary folder (from a copy, so the checkout stays clean), the Node SDK (`sdk/node`) built in
//! place, and `tests/workers/worker.py` or `worker.js` run on them as real processes that can be
//! killed, paused and resumed.
//!
//! nextest runs every test in its own process, so each build happens once per version of its
//! sources, not once per test: under an exclusive file lock a process checks a stamp (a hash of the
//! files the build reads) and builds only when it differs. The lock also keeps two processes from
//! writing `sdk/node/dist` at once.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Where the SDK is installed (a `--target` folder to put on PYTHONPATH).
fn python_sdk() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let sources = [root.join("sdk/python"), root.join("proto")];
        let hash = source_hash(&sources);
        let work = std::env::temp_dir().join(format!("rota-sdk-py-{hash:016x}"));
        let target = work.join("site");
        let _lock = BuildLock::take("rota-sdk-py");
        if work.join("complete").exists() {
            return target;
        }
        let _ = std::fs::remove_dir_all(&work);
        let src = work.join("src");
        copy_dir(&root.join("sdk/python"), &src);
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-build-isolation",
                "--no-deps",
            ])
            .args(["--root-user-action=ignore", "--target"])
            .arg(&target)
            .arg(&src)
            .env("ROTA_PROTO", root.join("proto"))
            .output()
            .expect("run pip (python3 with pip, grpcio, grpcio-tools and setuptools: ./test.sh installs them)");
        assert!(
            out.status.success(),
            "installing sdk/python failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(work.join("complete"), b"").expect("write the build stamp");
        target
    })
}

/// An exclusive lock on a file in the temporary folder, held until dropped (the OS releases it if
/// the process dies).
struct BuildLock(std::fs::File);

impl BuildLock {
    fn take(name: &str) -> BuildLock {
        let path = std::env::temp_dir().join(format!("{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("open the build lock");
        file.lock().expect("take the build lock");
        BuildLock(file)
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// A hash (FNV-1a, 64 bits) of every file under `roots` that a build reads: names and contents,
/// in a fixed order, leaving out what builds write (`skipped`).
fn source_hash(roots: &[PathBuf]) -> u64 {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.map_while(Result::ok) {
            let p = e.path();
            if skipped(&e.file_name().to_string_lossy()) {
                continue;
            }
            if p.is_dir() {
                walk(&p, files);
            } else {
                files.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for r in roots {
        walk(r, &mut files);
    }
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for f in files {
        eat(f.display().to_string().as_bytes());
        eat(&std::fs::read(&f).unwrap_or_default());
    }
    h
}

/// What the SDK builds write (and the copy leaves out): never part of their sources.
fn skipped(name: &str) -> bool {
    matches!(name, "build" | "__pycache__" | "_proto" | "node_modules" | "dist" | "proto")
        || name.ends_with(".egg-info")
}

/// PYTHONPATH for a process on the SDK: its install folder, then what the caller had (the packages
/// `./test.sh` installs).
fn python_path() -> String {
    let site = python_sdk().display().to_string();
    match std::env::var("PYTHONPATH") {
        Ok(p) if !p.is_empty() => format!("{site}:{p}"),
        _ => site,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read sdk dir").map_while(Result::ok) {
        let name = e.file_name();
        if skipped(&name.to_string_lossy()) {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(&name));
        } else {
            std::fs::copy(&p, to.join(&name)).expect("copy");
        }
    }
}

/// The Node SDK (`sdk/node`) built once per version of its sources: its packages installed from
/// its lock file when missing (`./test.sh` installs them), then compiled (`npm run build`: dist/,
/// ignored by git, with the sources' hash in `dist/.source-hash`).
fn node_sdk() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let sdk = root.join("sdk/node");
        let _lock = BuildLock::take("rota-sdk-node");
        let hash = format!("{:016x}", source_hash(&[sdk.clone(), root.join("proto")]));
        let stamp = sdk.join("dist/.source-hash");
        if std::fs::read_to_string(&stamp).is_ok_and(|s| s == hash) {
            return sdk;
        }
        let npm = |args: &[&str]| {
            let out = Command::new("npm").args(args).current_dir(&sdk).output().expect("run npm (Node.js with npm)");
            assert!(
                out.status.success(),
                "npm {args:?} in sdk/node failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        if !sdk.join("node_modules").exists() {
            npm(&["ci", "--no-audit", "--no-fund", "--ignore-scripts"]);
        }
        npm(&["run", "build", "--silent"]);
        let mut f = std::fs::File::create(&stamp).expect("write the build stamp");
        f.write_all(hash.as_bytes()).expect("write the build stamp");
        sdk
    })
    .clone()
}

/// Runs an SDK's own unit tests (`sdk/python/tests`, `sdk/node/test`) on the SDK as built for these
/// tests; panics with their output when one fails.
pub fn sdk_unit_tests(sdk: Sdk) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = match sdk {
        Sdk::Python => {
            Command::new("python3")
                .arg(root.join("sdk/python/tests/test_units.py"))
                .arg("-v")
                // Not the source folder: the tests import the SDK as installed.
                .current_dir(std::env::temp_dir())
                .env("PYTHONPATH", python_path())
                .output()
        }
        Sdk::Node => {
            let sdk = node_sdk();
            Command::new("node").args(["--test", "test/"]).current_dir(sdk).output()
        }
    }
    .expect("run the SDK's unit tests");
    assert!(
        out.status.success(),
        "{sdk:?} SDK unit tests failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Which SDK a worker process is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    Python,
    Node,
}

impl Sdk {
    /// The prefix of the test worker's handler names (`py.echo`, `js.echo`).
    pub fn prefix(self) -> &'static str {
        match self {
            Sdk::Python => "py",
            Sdk::Node => "js",
        }
    }
}

/// A running test worker: `tests/workers/worker.py` or `worker.js`.
pub struct ExtWorker {
    pub id: String,
    child: Option<Child>,
    log: PathBuf,
    pub sidelog: PathBuf,
    _dir: tempfile::TempDir,
}

impl ExtWorker {
    /// Starts a Python worker attached to `targets` (node addresses, tried in turn) with `slots`.
    pub fn start(targets: &[&str], id: &str, slots: u32, token: Option<&str>) -> ExtWorker {
        Self::start_on(Sdk::Python, targets, id, slots, token)
    }

    /// Starts a worker on `sdk`.
    pub fn start_on(sdk: Sdk, targets: &[&str], id: &str, slots: u32, token: Option<&str>) -> ExtWorker {
        Self::spawn_with(sdk, targets, id, slots, token, None, "")
    }

    /// Starts a worker on `sdk` with tags (`region=eu,gpu=true`).
    pub fn start_tagged(sdk: Sdk, targets: &[&str], id: &str, slots: u32, tags: &str) -> ExtWorker {
        Self::spawn_with(sdk, targets, id, slots, None, None, tags)
    }

    /// Starts a worker on `sdk` with `tags` whose runs go to `sidelog` (shared with other
    /// processes: the chaos runner's).
    pub fn start_logging_to(sdk: Sdk, targets: &[&str], id: &str, slots: u32, sidelog: &Path, tags: &str) -> ExtWorker {
        Self::spawn_with(sdk, targets, id, slots, None, Some(sidelog), tags)
    }

    fn spawn_with(
        sdk: Sdk,
        targets: &[&str],
        id: &str,
        slots: u32,
        token: Option<&str>,
        sidelog: Option<&Path>,
        tags: &str,
    ) -> ExtWorker {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("worker.log");
        let sidelog = sidelog.map(Path::to_path_buf).unwrap_or_else(|| dir.path().join("side.log"));
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = match sdk {
            Sdk::Python => {
                let mut c = Command::new("python3");
                c.arg(root.join("tests/workers/worker.py")).env("PYTHONPATH", python_path());
                c
            }
            Sdk::Node => {
                let mut c = Command::new("node");
                c.arg(root.join("tests/workers/worker.js")).env("ROTA_NODE_SDK", node_sdk());
                c
            }
        };
        cmd.args([&targets.join(","), id, &slots.to_string()]);
        if let Some(t) = token {
            cmd.arg(t);
        }
        let child = cmd
            .env("ROTA_SIDELOG", &sidelog)
            .env("ROTA_WORKER_TAGS", tags)
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn the worker process");
        ExtWorker { id: id.to_string(), child: Some(child), log, sidelog, _dir: dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The side log's lines: (kind S/E/C, execution id, fire id, attempt).
    pub fn runs(&self) -> Vec<(String, String, String, u32)> {
        std::fs::read_to_string(&self.sidelog)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Some((f.first()?.to_string(), f.get(1)?.to_string(), f.get(2)?.to_string(), f.get(3)?.parse().ok()?))
            })
            .collect()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        }
    }

    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (the worker stops taking fires, finishes its running ones, closes) and wait; the
    /// exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
        c.wait().ok().and_then(|s| s.code())
    }

    /// True once the process has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for ExtWorker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- log of worker {} ----\n{}", self.id, self.log());
        }
        self.kill();
    }
}

/// Waits until a node lists the worker's handler (it is attached).
pub async fn attached(node: &super::TestNode, handler: &str) {
    super::eventually(
        std::time::Duration::from_secs(30),
        "the worker attached (its handler listed by the node)",
        || async {
            let r = node.client().await.list_nodes(rota::pb::ListNodesRequest {}).await.ok()?.into_inner();
            r.nodes.iter().any(|n| n.handlers.iter().any(|h| h == handler)).then_some(())
        },
    )
    .await;
}
