//! The `shell` handler: runs a program. Only on a node started with shell enabled, because it runs
//! programs on request. argv is executed directly (no shell) unless the job asks for `sh`.
//! The child gets its own process group, so a timeout (or a node shutdown) kills the whole group,
//! not just the direct child. stdout and stderr are captured apart, each up to a cap; the rest is
//! drained and dropped so a chatty child never blocks on a full pipe. A failed run's error ends with
//! the last non-empty line of stderr (read from its tail, kept even past the cap), since that is
//! where programs say why they failed.
//!
//! Arguments: `["/usr/bin/echo", "hi"]`, `shell('/usr/bin/echo', 'hi')`, or
//! `{"argv": [...], "env": {"K": "V"}, "cwd": "/tmp"}`, or `{"sh": "echo $ROTA_JOB_ID", ...}`.
use std::process::Stdio;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::handlers::{map_field, str_field, ArgsError, FireContext, Handler, HandlerFailure, Partial, RunOutput};
use crate::execution::truncate_utf8;

pub struct Shell {
    /// Bytes kept of stdout and of stderr, each.
    output_cap: usize,
    /// Absolute paths of the programs jobs may run, set on the node (never by a job). A job whose
    /// program is not listed is refused when it is put, and again at run time.
    allow: Vec<String>,
}

#[derive(Debug)]
struct Spec {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
}

impl Shell {
    pub fn new(output_cap: usize, allow: Vec<String>) -> Shell {
        Shell { output_cap, allow }
    }

    fn check_allowed(&self, program: &str) -> Result<(), String> {
        if self.allow.iter().any(|p| p == program) {
            return Ok(());
        }
        if !program.starts_with('/') {
            return Err(format!("program '{program}' must be an absolute path (allowed: {})", self.allowed()));
        }
        Err(format!("program '{program}' is not in this node's shell allowlist (allowed: {})", self.allowed()))
    }

    fn allowed(&self) -> String {
        if self.allow.is_empty() {
            "none; set shell_allow on the node".into()
        } else {
            self.allow.join(", ")
        }
    }

    fn spec(args: &Value) -> Result<Spec, ArgsError> {
        // `at` is where argv sits in the arguments: `[i]` for the array form, `argv[i]` for the object.
        let strings = |a: &Vec<Value>, at: &str| -> Result<Vec<String>, ArgsError> {
            a.iter()
                .enumerate()
                .map(|(i, v)| {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(ArgsError::at(format!("{at}[{i}]"), format!("must be a string, got {other}")))
                        }
                    };
                    no_nul(&s, || format!("{at}[{i}]"))?;
                    Ok(s)
                })
                .collect()
        };
        let spec = match args {
            Value::Array(a) => Spec { argv: strings(a, "")?, env: Vec::new(), cwd: None },
            Value::Object(o) => {
                let argv = match (o.get("argv"), str_field(o, "sh")?) {
                    (Some(Value::Array(a)), None) => strings(a, "argv")?,
                    (None, Some(script)) => {
                        no_nul(script, || "sh".into())?;
                        vec!["/bin/sh".into(), "-c".into(), script.to_string()]
                    }
                    (Some(_), Some(_)) => return Err("give either 'argv' or 'sh', not both".into()),
                    (Some(v), None) => {
                        return Err(ArgsError::at("argv", format!("must be an array of strings, got {v}")))
                    }
                    (None, None) => return Err("shell needs 'argv' (an array) or 'sh' (a script)".into()),
                };
                let env = map_field(o, "env")?;
                for (k, v) in &env {
                    check_env(k, v)?;
                }
                let cwd = str_field(o, "cwd")?.map(str::to_string);
                if let Some(d) = &cwd {
                    no_nul(d, || "cwd".into())?;
                    if !d.starts_with('/') {
                        return Err(ArgsError::at("cwd", format!("'{d}' must be an absolute path")));
                    }
                }
                Spec { argv, env, cwd }
            }
            _ => return Err("shell takes argv, e.g. [\"/usr/bin/echo\", \"hi\"], or {\"argv\": [...]}".into()),
        };
        if spec.argv.first().is_none_or(|p| p.is_empty()) {
            return Err("argv is empty: give the program to run".into());
        }
        Ok(spec)
    }
}

/// Environment variables a job may not set: `NAME`, or `PREFIX*` for a family. Compared in upper
/// case. The shell allowlist says which programs a job may run; these variables would let a job
/// change what such a program does at its start, before its own code runs: load a library of the
/// job's choosing (the loader, glibc, OpenSSL), run a file or expand a command in a shell, run code
/// at an interpreter's start, or look programs and hosts up elsewhere. Each one turns any allowed
/// program into "run anything". What stays allowed: ordinary variables, and TMPDIR: it only says
/// where the child writes scratch files, which it could write anyway as the node's user (glibc
/// drops it only for setuid programs, which rota does not run). Variables that one program reads
/// (GIT_SSH_COMMAND, PAGER, HOME for rc files) are not listed: a program that runs commands named
/// in its environment or config is as strong as /bin/sh, so allow it only where you would allow
/// /bin/sh (README, Security).
const ENV_DENIED: &[(&str, &str)] = &[
    ("LD_*", "the dynamic loader reads it (LD_PRELOAD loads a library into the program)"),
    ("DYLD_*", "the dynamic loader reads it"),
    ("GCONV_PATH", "glibc loads iconv modules (shared libraries) from it"),
    ("GLIBC_TUNABLES", "glibc reads it at every program's start"),
    ("MALLOC_*", "glibc's allocator reads it at every program's start"),
    ("LOCPATH", "glibc loads locale data from it"),
    ("NLSPATH", "glibc loads message catalogs from it"),
    ("HOSTALIASES", "the resolver reads it (host names would point elsewhere)"),
    ("RES_OPTIONS", "the resolver reads it"),
    ("LOCALDOMAIN", "the resolver reads it"),
    ("OPENSSL_*", "OpenSSL loads the engines, modules and config it names"),
    ("PATH", "programs are looked up through it; it comes from the node's environment only"),
    ("ENV", "sh runs the file it names"),
    ("BASH_*", "bash runs or loads what it names (BASH_ENV, BASH_FUNC_*)"),
    ("SHELLOPTS", "shells read it at start"),
    ("BASHOPTS", "bash reads it at start"),
    ("PS4", "shells expand it, commands included, when tracing"),
    ("IFS", "shells split words with it"),
    ("CDPATH", "shells read it"),
    ("ZDOTDIR", "zsh runs its startup files from there"),
    ("PYTHON*", "Python reads it at start (PYTHONPATH, PYTHONSTARTUP, PYTHONHOME)"),
    ("PERL5*", "Perl reads it at start (PERL5OPT, PERL5LIB)"),
    ("PERLLIB", "Perl loads modules from it"),
    ("PERLIO", "Perl loads I/O layers it names"),
    ("RUBY*", "Ruby reads it at start (RUBYOPT, RUBYLIB)"),
    ("NODE_*", "Node.js reads it at start (NODE_OPTIONS, NODE_PATH)"),
    ("JAVA_TOOL_OPTIONS", "the JVM reads it at start (-javaagent)"),
    ("_JAVA_OPTIONS", "the JVM reads it at start"),
    ("JDK_JAVA_OPTIONS", "the java launcher reads it"),
    ("CLASSPATH", "the JVM loads classes from it"),
    ("LUA_*", "Lua runs or loads what it names (LUA_INIT, LUA_PATH)"),
    ("PHPRC", "PHP reads its config from it"),
    ("PHP_INI_SCAN_DIR", "PHP reads its config from it"),
    ("GEM_*", "RubyGems loads gems from it"),
    ("DOTNET_*", ".NET reads it at start (DOTNET_STARTUP_HOOKS loads an assembly)"),
    ("CORECLR_*", ".NET loads the profiler it names"),
    ("COR_*", ".NET Framework loads the profiler it names"),
    ("GIO_*", "GLib loads modules from it"),
    ("GTK_*", "GTK loads modules from it"),
    ("GST_*", "GStreamer loads plugins from it"),
    ("QT_*", "Qt loads plugins from it"),
    ("TCLLIBPATH", "Tcl loads packages from it"),
    ("R_*", "R runs the profile files and loads the libraries it names"),
    ("ROTA_*", "rota sets ROTA_* to the fire's context"),
];

/// Exceptions to the families above: switches that name no file, module or code, and that jobs
/// commonly set (unbuffered Python output for live logs, NODE_ENV=production).
const ENV_ALLOWED: &[&str] = &["PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONUTF8", "NODE_ENV"];

/// Why `key` may not be set by a job, if it may not.
fn env_denied(key: &str) -> Option<&'static str> {
    let upper = key.to_ascii_uppercase();
    if ENV_ALLOWED.contains(&upper.as_str()) {
        return None;
    }
    ENV_DENIED.iter().find_map(|(pat, why)| {
        let hit = match pat.strip_suffix('*') {
            Some(prefix) => upper.starts_with(prefix),
            None => upper == *pat,
        };
        hit.then_some(*why)
    })
}

/// A key as shown in a field path: escaped (a NUL or newline stays visible) and cut.
fn shown(key: &str) -> String {
    let escaped: String = key.chars().flat_map(char::escape_debug).collect();
    match escaped.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &escaped[..i]),
        None => escaped,
    }
}

/// One env entry of a job: a valid name, not on ENV_DENIED, no NUL in the value. Checked at PutJob
/// and again before every run.
fn check_env(key: &str, value: &str) -> Result<(), ArgsError> {
    let path = || format!("env.{}", shown(key));
    let mut chars = key.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(ArgsError::at(path(), format!("'{}' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)", shown(key))));
    }
    if let Some(why) = env_denied(key) {
        return Err(ArgsError::at(path(), format!("{key} may not be set by a job: {why} (see README, Security)")));
    }
    no_nul(value, path)
}

/// exec takes C strings: a NUL would cut an argument short, so it is refused when the job is put.
fn no_nul(s: &str, path: impl FnOnce() -> String) -> Result<(), ArgsError> {
    if s.contains('\0') {
        return Err(ArgsError::at(path(), "has a NUL byte"));
    }
    Ok(())
}

/// A job's cwd exists and is a directory, so a missing one is reported as such (spawn would say
/// the program is missing).
async fn check_cwd(dir: &str) -> Result<(), HandlerFailure> {
    match tokio::fs::metadata(dir).await {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(HandlerFailure::new(format!("cwd '{dir}' is not a directory"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(HandlerFailure::new(format!("cwd '{dir}' does not exist")))
        }
        Err(e) => Err(HandlerFailure::new(format!("cwd '{dir}': {e}"))),
    }
}

/// Kills the child's whole process group unless the child was reaped: runs when the handler's
/// future is dropped at a timeout or shutdown.
struct GroupKill {
    pgid: Option<nix::unistd::Pid>,
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (already gone) is fine.
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Bytes kept of the end of a stream, past the cap, to find its last line.
const TAIL_BYTES: usize = 1024;
/// How long a cancelled run's process group has after SIGTERM before it is killed (SIGKILL, when
/// the pool drops the run: `GroupKill`).
pub const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest stderr line put into a failed run's error.
const ERROR_LINE_BYTES: usize = 512;

/// One stream as captured: its first `cap` bytes, whether more came, and its last bytes.
struct Captured {
    kept: Vec<u8>,
    cut: bool,
    tail: Vec<u8>,
}

/// Reads a stream to its end, keeping its first `cap` bytes (also handed to `keep` as they come, for
/// a run cut short) and its tail.
async fn read_capped(r: Option<impl AsyncRead + Unpin>, cap: usize, keep: impl Fn(&[u8])) -> Captured {
    let mut c = Captured { kept: Vec::new(), cut: false, tail: Vec::new() };
    let Some(mut r) = r else { return c };
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(c.kept.len());
                c.kept.extend_from_slice(&buf[..n.min(room)]);
                keep(&buf[..n.min(room)]);
                c.cut |= n > room;
                c.tail.extend_from_slice(&buf[..n]);
                let extra = c.tail.len().saturating_sub(TAIL_BYTES);
                c.tail.drain(..extra);
            }
        }
    }
    c
}

impl Captured {
    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.kept).into_owned();
        if self.cut {
            s.push_str("…[truncated]");
        }
        s
    }

    /// The last non-empty line, trimmed and capped (None when the stream had none).
    fn last_line(&self) -> Option<String> {
        let tail = String::from_utf8_lossy(&self.tail);
        let line = tail.lines().map(str::trim).rfind(|l| !l.is_empty())?;
        Some(truncate_utf8(line.to_string(), ERROR_LINE_BYTES))
    }
}

#[async_trait]
impl Handler for Shell {
    fn validate(&self, args: &Value) -> Result<(), ArgsError> {
        let spec = Self::spec(args)?;
        Ok(self.check_allowed(&spec.argv[0])?)
    }

    /// A cancelled run's group gets SIGTERM at once (`run_output`), SIGKILL after this.
    fn stop_grace(&self) -> std::time::Duration {
        CANCEL_GRACE
    }

    /// The output alone; the worker calls `run_output`, which keeps stderr too.
    async fn run(&self, ctx: &FireContext, args: &Value) -> Result<String, HandlerFailure> {
        self.run_output(ctx, args, &Partial::default()).await.map(|o| o.output)
    }

    async fn run_output(
        &self,
        ctx: &FireContext,
        args: &Value,
        partial: &Partial,
    ) -> Result<RunOutput, HandlerFailure> {
        // Checked again here, env rules included: the allowlist may have shrunk since the job was
        // put, and a job may have reached the store another way (an older version, a direct write).
        let spec = Self::spec(args).map_err(|e| HandlerFailure::new(e.to_string()))?;
        self.check_allowed(&spec.argv[0]).map_err(HandlerFailure::new)?;
        let mut cmd = Command::new(&spec.argv[0]);
        cmd.args(&spec.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // The child inherits the node's environment without the node's own ROTA_* settings
        // (ROTA_CLUSTER_SECRET, ROTA_REDIS with its password): a job printing its environment
        // must not learn them. Then the job's variables, then the fire's context, last so it wins.
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("ROTA_")) {
                cmd.env_remove(&k);
            }
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        for (k, v) in ctx.fields() {
            cmd.env(format!("ROTA_{k}"), v);
        }
        if let Some(d) = &spec.cwd {
            check_cwd(d).await?;
            cmd.current_dir(d);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            // spawn reports a cwd that vanished since the check as the program missing: say which.
            Err(e) => {
                if let Some(d) = &spec.cwd {
                    check_cwd(d).await?;
                }
                return Err(HandlerFailure::new(format!("cannot start '{}': {e}", spec.argv[0])));
            }
        };
        let mut guard =
            GroupKill { pgid: child.id().and_then(|p| i32::try_from(p).ok()).map(nix::unistd::Pid::from_raw) };
        let cap = self.output_cap;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        // Cancelled (`FireContext::stop`): the whole group is asked to end (SIGTERM) and the run goes
        // on until it does; the pool drops it after the grace, which kills the group (`GroupKill`).
        // The child may be reaped already (the join waits for its pipes too, which a grandchild can
        // hold open): Linux does not hand out a number still used as a process group id, so the
        // signal reaches the group's remaining processes, or no one (ESRCH) once it is empty; only a
        // pid wrap-around within that moment could make it someone else's.
        let pgid = guard.pgid;
        let terminate = async {
            ctx.stop.wait(&ctx.execution_id).await;
            if let Some(pgid) = pgid {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
            }
            std::future::pending::<std::convert::Infallible>().await
        };
        let run = async {
            tokio::join!(
                child.wait(),
                read_capped(stdout, cap, |b| partial.output(b)),
                read_capped(stderr, cap, |b| partial.stderr(b))
            )
        };
        let (status, out, err) = tokio::select! {
            r = run => r,
            never = terminate => match never {},
        };
        let status = status.map_err(|e| HandlerFailure::new(format!("waiting for the child failed: {e}")))?;
        // Reaped: its pid (and group id) may be reused, so never signal it now. Grandchildren still
        // in the group are left alone once the direct child exits normally.
        guard.pgid = None;
        let (output, stderr) = (out.text(), err.text());
        if status.success() {
            Ok(RunOutput { output, stderr })
        } else {
            let mut why = match status.code() {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".to_string(),
            };
            if let Some(line) = err.last_line() {
                why = format!("{why}: {line}");
            }
            Err(HandlerFailure { message: why, output, stderr, kind: Default::default() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allow() -> Vec<String> {
        vec!["/bin/sh".into(), "/nonexistent/prog".into()]
    }

    #[test]
    fn only_allowlisted_absolute_programs() {
        let sh = Shell::new(16, vec!["/bin/echo".into()]);
        assert!(sh.validate(&json!(["/bin/echo", "hi"])).is_ok());
        let e = sh.validate(&json!(["/bin/rm", "-rf", "/"])).expect_err("unlisted").to_string();
        assert_eq!(e, "args: program '/bin/rm' is not in this node's shell allowlist (allowed: /bin/echo)");
        let e = sh.validate(&json!(["echo"])).expect_err("relative").to_string();
        assert!(e.starts_with("args: program 'echo' must be an absolute path"), "{e}");
        // `sh` mode runs /bin/sh, so it needs /bin/sh on the list.
        assert!(sh.validate(&json!({"sh": "echo hi"})).is_err());
        let none = Shell::new(16, vec![]);
        assert!(none.validate(&json!(["/bin/echo"])).expect_err("empty list").reason.contains("set shell_allow"));
    }

    fn ctx() -> FireContext {
        FireContext::example()
    }

    #[tokio::test]
    async fn runs_argv_with_context_env_and_caps_output() {
        let sh = Shell::new(16, allow());
        let out = sh
            .run(
                &ctx(),
                &json!({"sh": "echo $ROTA_JOB_ID $ROTA_SCHEDULED_AT_MS $ROTA_ATTEMPT $FOO", "env": {"FOO": "bar"}}),
            )
            .await
            .expect("ok");
        assert_eq!(out, "j 1000 1 bar\n");
        let out = sh.run(&ctx(), &json!({"sh": "yes | head -c 100000"})).await.expect("ok");
        assert_eq!(out, format!("{}…[truncated]", "y\n".repeat(8)));
    }

    #[tokio::test]
    async fn failure_carries_status_and_stderr() {
        let f = Shell::new(1024, allow())
            .run(&ctx(), &json!({"sh": "echo out; echo first >&2; echo oops >&2; echo >&2; exit 3"}))
            .await
            .expect_err("fails");
        assert_eq!(f.message, "exit status 3: oops");
        assert_eq!(f.output, "out\n");
        assert_eq!(f.stderr, "first\noops\n\n");
        // Past the cap, the error still names the real last line (read from the tail).
        let f = Shell::new(16, allow())
            .run(&ctx(), &json!({"sh": "yes noise | head -n 20000 >&2; echo the cause >&2; exit 4"}))
            .await
            .expect_err("fails");
        assert_eq!(f.message, "exit status 4: the cause");
        assert!(f.stderr.ends_with("…[truncated]"), "{}", f.stderr);
        let f = Shell::new(1024, allow()).run(&ctx(), &json!({"sh": "exit 5"})).await.expect_err("fails");
        assert_eq!(f.message, "exit status 5", "no stderr, nothing added");
        let ok = Shell::new(1024, allow())
            .run_output(&ctx(), &json!({"sh": "echo a; echo b >&2"}), &Partial::default())
            .await
            .expect("ok");
        assert_eq!(ok, RunOutput { output: "a\n".into(), stderr: "b\n".into() });
        let f = Shell::new(1024, allow()).run(&ctx(), &json!(["/nonexistent/prog"])).await.expect_err("fails");
        assert!(f.message.starts_with("cannot start '/nonexistent/prog'"), "{}", f.message);
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        // The grandchild (sleep) is in the same group; it must die too.
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let sh = Shell::new(1024, allow());
        let args = json!({"sh": script});
        let c = ctx();
        let r = tokio::time::timeout(std::time::Duration::from_millis(500), sh.run(&c, &args)).await;
        assert!(r.is_err(), "should time out");
        let pid: i32 = std::fs::read_to_string(&pidfile).expect("pid written").trim().parse().expect("pid");
        let gone = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            // A zombie reparented to init is reaped quickly; kill(pid, 0) fails once it is gone.
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
                || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
        });
        assert!(gone, "grandchild {pid} survived the timeout");
    }

    fn registry(allow: &[&str]) -> crate::worker::handlers::Registry {
        let mut r = crate::worker::handlers::Registry::default();
        r.register("shell", Shell::new(1024, allow.iter().map(|p| p.to_string()).collect()));
        r
    }

    /// LD_PRELOAD (or any loader or interpreter hook) in a job's env would run code of the job's
    /// choosing inside an allowlisted program: refused at PutJob naming the variable.
    #[test]
    fn env_loader_and_interpreter_variables_are_refused() {
        let r = registry(&["/bin/echo"]);
        for key in [
            "DOTNET_STARTUP_HOOKS",
            "CORECLR_PROFILER_PATH",
            "COR_PROFILER_PATH",
            "GEM_PATH",
            "GTK_MODULES",
            "GIO_MODULE_DIR",
            "GST_PLUGIN_PATH",
            "QT_PLUGIN_PATH",
            "TCLLIBPATH",
            "R_PROFILE_USER",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "PATH",
            "BASH_ENV",
            "ENV",
            "SHELLOPTS",
            "BASHOPTS",
            "PS4",
            "IFS",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "PERL5LIB",
            "PERLLIB",
            "RUBYOPT",
            "NODE_OPTIONS",
            "NODE_PATH",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "GCONV_PATH",
            "MALLOC_CHECK_",
            "GLIBC_TUNABLES",
            "LOCPATH",
            "HOSTALIASES",
            "RES_OPTIONS",
            "OPENSSL_CONF",
            "ld_preload",
            "ROTA_JOB_ID",
        ] {
            let args = json!({"argv": ["/bin/echo", "hi"], "env": {key: "/tmp/evil.so"}});
            let e = r.validate("shell", &args).expect_err(key).to_string();
            assert!(e.starts_with(&format!("args.env.{key}: ")), "{key}: {e}");
        }
        for key in ["A=B", "1A", "A-B", "A B", ""] {
            let args = json!({"argv": ["/bin/echo"], "env": {key: "x"}});
            let e = r.validate("shell", &args).expect_err(key).to_string();
            assert!(e.starts_with("args.env."), "{key}: {e}");
            assert!(e.contains("is not a variable name"), "{key}: {e}");
        }
        // Ordinary variables, TMPDIR (see ENV_DENIED for why) and the harmless switches pass.
        let args = json!({"argv": ["/bin/echo"], "env": {"FOO": "1", "_X9": "2", "TMPDIR": "/var/tmp", "LANG": "C",
            "PYTHONUNBUFFERED": "1", "NODE_ENV": "production"}});
        r.validate("shell", &args).expect("ordinary variables");
    }

    /// A NUL byte cannot reach exec: refused at PutJob naming the item, not found at run time.
    #[test]
    fn nul_bytes_are_refused_at_put() {
        let r = registry(&["/bin/echo", "/bin/sh"]);
        let cases = [
            (json!(["/bin/echo", "a\u{0}b"]), "args[1]: "),
            (json!({"argv": ["/bin/echo", "ok", "x\u{0}"]}), "args.argv[2]: "),
            (json!({"argv": ["/bin/echo\u{0}"]}), "args.argv[0]: "),
            (json!({"argv": ["/bin/echo"], "env": {"K": "v\u{0}"}}), "args.env.K: "),
            (json!({"argv": ["/bin/echo"], "env": {"K\u{0}": "v"}}), "args.env.K\\0: "),
            (json!({"argv": ["/bin/echo"], "cwd": "/tmp\u{0}"}), "args.cwd: "),
            (json!({"sh": "echo\u{0}"}), "args.sh: "),
        ];
        for (args, want) in cases {
            let e = r.validate("shell", &args).expect_err(want).to_string();
            assert!(e.starts_with(want), "got {e:?}, want prefix {want:?}");
        }
        let e = r.validate("shell", &json!({"argv": ["/bin/echo"], "cwd": "tmp"})).expect_err("relative").to_string();
        assert!(e.starts_with("args.cwd: 'tmp' must be an absolute path"), "{e}");
    }

    /// Checked again at run time (a job stored before the rule, or written to the store directly).
    #[tokio::test]
    async fn run_refuses_denied_env_again() {
        let sh = Shell::new(1024, allow());
        let args = json!({"sh": "echo $LD_PRELOAD", "env": {"LD_PRELOAD": "/nonexistent/evil.so"}});
        let f = sh.run(&ctx(), &args).await.expect_err("refused");
        assert!(f.message.starts_with("args.env.LD_PRELOAD: "), "{}", f.message);
    }

    #[tokio::test]
    async fn a_missing_cwd_is_reported_as_such() {
        let sh = Shell::new(1024, allow());
        let f = sh.run(&ctx(), &json!({"sh": "true", "cwd": "/nonexistent/dir"})).await.expect_err("no cwd");
        assert_eq!(f.message, "cwd '/nonexistent/dir' does not exist");
        let file = tempfile::NamedTempFile::new().expect("tempfile");
        let cwd = file.path().display().to_string();
        let f = sh.run(&ctx(), &json!({"sh": "true", "cwd": cwd})).await.expect_err("not a dir");
        assert_eq!(f.message, format!("cwd '{cwd}' is not a directory"));
    }

    #[test]
    fn argument_shapes() {
        assert!(Shell::spec(&json!(["/bin/true"])).is_ok());
        assert!(Shell::spec(&json!({"argv": ["/bin/true"], "cwd": "/"})).is_ok());
        let e = Shell::spec(&json!([])).expect_err("empty").to_string();
        assert_eq!(e, "args: argv is empty: give the program to run");
        assert!(Shell::spec(&json!({"argv": "x"})).is_err());
        assert!(Shell::spec(&json!({"argv": ["a"], "sh": "b"})).is_err());
        assert!(Shell::spec(&json!({"argv": ["a"], "env": {"A": 1}})).is_err());
        assert!(Shell::spec(&json!("str")).is_err());
    }
}
