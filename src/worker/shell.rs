//! The `shell` handler: runs a program. Only on a node started with shell enabled, because it runs
//! programs on request. argv is executed directly (no shell) unless the job asks for `sh`.
//! The child gets its own process group, so a timeout (or a node shutdown) kills the whole group,
//! not just the direct child. stdout and stderr are captured up to a cap; the rest is drained and
//! dropped so a chatty child never blocks on a full pipe.
//!
//! Arguments: `["/usr/bin/echo", "hi"]`, `shell('/usr/bin/echo', 'hi')`, or
//! `{"argv": [...], "env": {"K": "V"}, "cwd": "/tmp"}`, or `{"sh": "echo $ROTA_JOB_ID", ...}`.
use std::process::Stdio;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::handlers::{map_field, str_field, FireContext, Handler, HandlerFailure};
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

    fn spec(args: &Value) -> Result<Spec, String> {
        let strings = |a: &Vec<Value>| -> Result<Vec<String>, String> {
            a.iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    Value::Bool(b) => Ok(b.to_string()),
                    other => Err(format!("argv items must be strings, got {other}")),
                })
                .collect()
        };
        let spec = match args {
            Value::Array(a) => Spec { argv: strings(a)?, env: Vec::new(), cwd: None },
            Value::Object(o) => {
                let argv = match (o.get("argv"), str_field(o, "sh")?) {
                    (Some(Value::Array(a)), None) => strings(a)?,
                    (None, Some(script)) => vec!["/bin/sh".into(), "-c".into(), script.to_string()],
                    (Some(_), Some(_)) => return Err("give either 'argv' or 'sh', not both".into()),
                    (Some(v), None) => return Err(format!("'argv' must be an array of strings, got {v}")),
                    (None, None) => return Err("shell needs 'argv' (an array) or 'sh' (a script)".into()),
                };
                Spec { argv, env: map_field(o, "env")?, cwd: str_field(o, "cwd")?.map(str::to_string) }
            }
            _ => return Err("shell takes argv, e.g. [\"/usr/bin/echo\", \"hi\"], or {\"argv\": [...]}".into()),
        };
        if spec.argv.first().is_none_or(|p| p.is_empty()) {
            return Err("argv is empty: give the program to run".into());
        }
        Ok(spec)
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

async fn read_capped(r: Option<impl AsyncRead + Unpin>, cap: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = r else { return (Vec::new(), false) };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut cut = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    (kept, cut)
}

fn text(bytes: Vec<u8>, cut: bool) -> String {
    let mut s = String::from_utf8_lossy(&bytes).into_owned();
    if cut {
        s.push_str("…[truncated]");
    }
    s
}

#[async_trait]
impl Handler for Shell {
    fn validate(&self, args: &Value) -> Result<(), String> {
        let spec = Self::spec(args)?;
        self.check_allowed(&spec.argv[0])
    }

    async fn run(&self, ctx: &FireContext, args: &Value) -> Result<String, HandlerFailure> {
        let spec = Self::spec(args).map_err(HandlerFailure::new)?;
        // Checked again here: the allowlist may have shrunk since the job was put.
        self.check_allowed(&spec.argv[0]).map_err(HandlerFailure::new)?;
        let mut cmd = Command::new(&spec.argv[0]);
        cmd.args(&spec.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (k, v) in ctx.fields() {
            cmd.env(format!("ROTA_{k}"), v);
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        if let Some(d) = &spec.cwd {
            cmd.current_dir(d);
        }
        let mut child =
            cmd.spawn().map_err(|e| HandlerFailure::new(format!("cannot start '{}': {e}", spec.argv[0])))?;
        let mut guard =
            GroupKill { pgid: child.id().and_then(|p| i32::try_from(p).ok()).map(nix::unistd::Pid::from_raw) };
        let cap = self.output_cap;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (status, (out, out_cut), (err, err_cut)) =
            tokio::join!(child.wait(), read_capped(stdout, cap), read_capped(stderr, cap));
        let status = status.map_err(|e| HandlerFailure::new(format!("waiting for the child failed: {e}")))?;
        // Reaped: its pid (and group id) may be reused, so never signal it now. Grandchildren still
        // in the group are left alone once the direct child exits normally.
        guard.pgid = None;
        let (out, err) = (text(out, out_cut), text(err, err_cut));
        let output = match (out.is_empty(), err.is_empty()) {
            (_, true) => out,
            (true, false) => err,
            (false, false) => format!("{out}\n--- stderr ---\n{err}"),
        };
        let output = truncate_utf8(output, 2 * cap + 64);
        if status.success() {
            Ok(output)
        } else {
            let why = match status.code() {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".to_string(),
            };
            Err(HandlerFailure { message: why, output })
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
        let e = sh.validate(&json!(["/bin/rm", "-rf", "/"])).expect_err("unlisted");
        assert_eq!(e, "program '/bin/rm' is not in this node's shell allowlist (allowed: /bin/echo)");
        let e = sh.validate(&json!(["echo"])).expect_err("relative");
        assert!(e.starts_with("program 'echo' must be an absolute path"), "{e}");
        // `sh` mode runs /bin/sh, so it needs /bin/sh on the list.
        assert!(sh.validate(&json!({"sh": "echo hi"})).is_err());
        let none = Shell::new(16, vec![]);
        assert!(none.validate(&json!(["/bin/echo"])).expect_err("empty list").contains("set shell_allow"));
    }

    fn ctx() -> FireContext {
        FireContext {
            job_id: "j".into(),
            fire_id: "j@1000".into(),
            execution_id: "e1".into(),
            scheduled_ms: 1000,
            attempt: 1,
            node_id: "n1".into(),
            epoch: 0,
            manual: false,
        }
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
        let f =
            Shell::new(1024, allow()).run(&ctx(), &json!({"sh": "echo oops >&2; exit 3"})).await.expect_err("fails");
        assert_eq!(f.message, "exit status 3");
        assert_eq!(f.output, "oops\n");
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

    #[test]
    fn argument_shapes() {
        assert!(Shell::spec(&json!(["/bin/true"])).is_ok());
        assert!(Shell::spec(&json!({"argv": ["/bin/true"], "cwd": "/"})).is_ok());
        assert_eq!(Shell::spec(&json!([])).err().as_deref(), Some("argv is empty: give the program to run"));
        assert!(Shell::spec(&json!({"argv": "x"})).is_err());
        assert!(Shell::spec(&json!({"argv": ["a"], "sh": "b"})).is_err());
        assert!(Shell::spec(&json!({"argv": ["a"], "env": {"A": 1}})).is_err());
        assert!(Shell::spec(&json!("str")).is_err());
    }
}
