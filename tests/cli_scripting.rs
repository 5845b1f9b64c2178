//! The `rota` CLI as a script uses it, with the real binary against real nodes: closed pipes, lists
//! longer than a page, one spelling per value, the JSON shapes, exit codes, several endpoints, and
//! a watch that outlives its node without missing a change.
mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, executions, free_port, job, Backend, RedisServer, TestNode};
use rota::pb;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// The CLI with no ROTA_ENDPOINT from the caller's environment: every test says where it talks.
fn rota_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rota"));
    c.args(args).env_remove("ROTA_ENDPOINT").env_remove("ROTA_TOKEN");
    c
}

/// Runs the CLI to its end (at most 30 s, then it is killed and the test fails).
fn rota(args: &[&str]) -> (i32, String, String) {
    let child = rota_cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run rota");
    let out = wait_exit(child, WAIT);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Waits for a child to exit within `timeout`, killing it (and failing) if it does not. Its output
/// is read meanwhile (a child writing more than a pipe holds would wait for a reader forever).
fn wait_exit(mut child: std::process::Child, timeout: Duration) -> Output {
    fn drain<R: std::io::Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = err.join().unwrap_or_default();
            panic!("rota did not exit within {timeout:?}; stderr: {}", String::from_utf8_lossy(&err));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

async fn put(node: &TestNode, id: &str, cron: &str) {
    let mut c = node.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job(id, cron, "noop", json!(null))) }).await.expect("put");
}

/// Output piped into a reader that stops early (`exec watch --json | head -c 600`, `exec list |
/// head -1`): the CLI ends by SIGPIPE (141 in the shell) or 0, never by a panic (101).
#[tokio::test]
async fn output_into_a_closed_pipe_ends_quietly() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    put(&node, "tick", "* * * * * *").await;
    let mut c = node.client().await;
    eventually(WAIT, "a few executions", || {
        let mut c = c.clone();
        async move { (executions(&mut c, "tick").await.len() >= 5).then_some(()) }
    })
    .await;
    let _ = &mut c;
    let bin = env!("CARGO_BIN_EXE_rota");
    for (what, pipeline) in [
        (
            "exec watch --json | head -c 600",
            format!("'{bin}' exec watch --json --endpoint {} | head -c 600", node.addr),
        ),
        ("exec list | head -1", format!("'{bin}' exec list --limit 1000 --endpoint {} | head -1", node.addr)),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let err_file = dir.path().join("stderr");
        let script =
            format!("set -o pipefail; {pipeline} 2>'{}' >/dev/null; echo \"${{PIPESTATUS[0]}}\"", err_file.display());
        let child = Command::new("bash")
            .args(["-c", &script])
            .env_remove("ROTA_ENDPOINT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash");
        let out = wait_exit(child, WAIT);
        let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = std::fs::read_to_string(&err_file).unwrap_or_default();
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(status == "141" || status == "0", "{what}: exit {status} (141 = SIGPIPE), stderr: {err}");
    }
}

/// `job list` shows every job, not the first page; `--limit` cuts the list and says how to go on.
#[tokio::test]
async fn job_list_pages_through_every_job() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    for i in 0..150 {
        put(&node, &format!("j{i:03}"), "0 0 1 1 *").await;
    }
    let ep = node.addr.as_str();
    let (code, out, err) = rota(&["job", "list", "--endpoint", ep]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 151, "a header and 150 jobs: {out}");
    assert!(lines[150].starts_with("j149") && !out.contains("(more"), "{out}");
    let (code, out, _) = rota(&["job", "list", "--json", "--endpoint", ep]);
    let v = json_of(&out);
    assert_eq!((code, v["jobs"].as_array().map(Vec::len), v["next_page_token"].as_str()), (0, Some(150), Some("")));
    let (code, out, _) = rota(&["job", "list", "--limit", "120", "--endpoint", ep]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 122, "a header, 120 jobs and the hint: {out}");
    assert!(out.ends_with("(more: --page-token j119)\n"), "{out}");
    let (code, out, _) = rota(&["job", "list", "--limit", "120", "--page-token", "j119", "--json", "--endpoint", ep]);
    let v = json_of(&out);
    let rest = v["jobs"].as_array().expect("jobs");
    assert_eq!((code, rest.len(), rest[0]["id"].as_str()), (0, 30, Some("j120")));
    assert_eq!(v["next_page_token"].as_str(), Some(""));
}

/// One spelling per value: output, JSON, the jobs file and flags all say `fire_once_now`,
/// `timed_out`, `forbid`, `rerun`, `live`, `master`; flags still take the old kebab form.
#[tokio::test]
async fn one_spelling_per_value_and_kebab_still_accepted() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let ep = node.addr.as_str();
    for (id, misfire) in [("snake", "fire_once_now"), ("kebab", "fire-once-now")] {
        let (code, _, err) = rota(&[
            "job",
            "put",
            "--id",
            id,
            "--cron",
            "0 0 1 1 *",
            "--handler",
            "noop",
            "--misfire",
            misfire,
            "--concurrency",
            "forbid",
            "--recovery",
            "rerun",
            "--retries",
            "2",
            "--retry-backoff",
            "2s",
            "--endpoint",
            ep,
        ]);
        assert_eq!(code, 0, "--misfire {misfire}: {err}");
        let (_, out, _) = rota(&["job", "get", id, "--json", "--endpoint", ep]);
        let v = json_of(&out);
        let got = (v["misfire"].as_str(), v["concurrency"].as_str(), v["recovery"].as_str());
        assert_eq!(got, (Some("fire_once_now"), Some("forbid"), Some("rerun")), "{out}");
        assert_eq!(v["retry_backoff_ms"].as_i64(), Some(2000), "{out}");
        let (_, out, _) = rota(&["job", "get", id, "--endpoint", ep]);
        assert!(out.contains("misfire: fire_once_now") && out.contains("retry_backoff_ms: 2000"), "{out}");
    }
    for state in ["timed_out", "timed-out"] {
        let (code, out, err) = rota(&["exec", "list", "--state", state, "--endpoint", ep]);
        assert_eq!(code, 0, "--state {state}: {err}");
        assert!(out.starts_with("ID"), "{out}");
    }
    let (code, _, err) = rota(&["exec", "list", "--state", "timedout", "--endpoint", ep]);
    assert!(code == 2 && err.contains("timed_out"), "a wrong value lists the right spellings: {err}");
    let (_, help, _) = rota(&["exec", "list", "--help"]);
    assert!(help.contains("timed_out") && !help.contains("timed-out"), "the alias is hidden: {help}");
    let (_, out, _) = rota(&["nodes", "--json", "--endpoint", ep]);
    let v = json_of(&out);
    assert_eq!((v["nodes"][0]["state"].as_str(), v["nodes"][0]["role"].as_str()), (Some("live"), Some("master")));
    // Routing: the wire's spelling, the kebab alias, and the failover list.
    for (id, routing) in [("fo", "failover"), ("lru", "least-recently-used")] {
        let mut args = vec!["job", "put", "--id", id, "--cron", "0 0 1 1 *", "--handler", "noop", "--routing", routing];
        if routing == "failover" {
            args.extend(["--failover-node", "n2", "--failover-node", "n1"]);
        }
        args.extend(["--endpoint", ep]);
        let (code, _, err) = rota(&args);
        assert_eq!(code, 0, "--routing {routing}: {err}");
    }
    let (_, out, _) = rota(&["job", "get", "fo", "--json", "--endpoint", ep]);
    let v = json_of(&out);
    assert_eq!(
        (v["routing"].as_str(), &v["failover_nodes"]),
        (Some("failover"), &serde_json::json!(["n2", "n1"])),
        "{out}"
    );
    let (_, out, _) = rota(&["job", "get", "lru", "--json", "--endpoint", ep]);
    assert_eq!(json_of(&out)["routing"].as_str(), Some("least_recently_used"), "{out}");
    let (code, _, err) =
        rota(&["job", "put", "--id", "x", "--cron", "@daily", "--handler", "noop", "--routing", "nearest"]);
    assert!(code == 2 && err.contains("round_robin"), "a wrong value lists the right spellings: {err}");
    let (code, _, err) = rota(&[
        "job",
        "put",
        "--id",
        "x",
        "--cron",
        "@daily",
        "--handler",
        "noop",
        "--failover-node",
        "n1",
        "--endpoint",
        ep,
    ]);
    assert!(code != 0 && err.contains("failover_nodes: only for routing failover"), "{code}: {err}");
}

/// Lists in JSON are one object named like the API's response.
#[tokio::test]
async fn json_list_shapes_are_named_objects() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    put(&node, "tick", "* * * * * *").await;
    let ep = node.addr.as_str();
    let (_, out, _) = rota(&["job", "list", "--json", "--endpoint", ep]);
    let v = json_of(&out);
    assert!(v["jobs"].is_array() && v["next_page_token"].is_string(), "{out}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{out}");
    let v = eventually(WAIT, "an execution", || async {
        let (_, out, _) = rota(&["exec", "list", "--json", "--endpoint", ep]);
        let v = json_of(&out);
        (v["executions"].as_array().is_some_and(|a| !a.is_empty())).then_some(v)
    })
    .await;
    assert!(v["next_page_token"].is_string() && v.as_object().map(|o| o.len()) == Some(2), "{v}");
    let (_, out, _) = rota(&["nodes", "--json", "--endpoint", ep]);
    let v = json_of(&out);
    assert!(v["nodes"].as_array().is_some_and(|a| a.len() == 1) && v.as_object().map(|o| o.len()) == Some(1));
}

/// A job id that names nothing is NOT_FOUND (exit 4) for `exec list` and `exec watch`, on both
/// stores; a deleted job's kept executions still list and watch.
#[tokio::test]
async fn an_unknown_job_is_not_found_exit_4() {
    for (name, backend, _redis) in common::backends() {
        let node = TestNode::start(&backend, "n1", &[]).await;
        let ep = node.addr.as_str();
        let want = "error: NotFound: job 'wbe' not found\n";
        for args in [&["exec", "list", "--job", "wbe"][..], &["exec", "watch", "--job", "wbe"], &["job", "get", "wbe"]]
        {
            let (code, out, err) = rota(&[args, &["--endpoint", ep]].concat());
            assert_eq!((code, out.as_str(), err.as_str()), (4, "", want), "{name}: {args:?}");
        }
        let mut c = node.client().await;
        let req = |job: &str| pb::ListExecutionsRequest { job_id: job.into(), ..Default::default() };
        let e = c.list_executions(req("wbe")).await.expect_err("unknown job");
        assert_eq!((e.code(), e.message()), (tonic::Code::NotFound, "job 'wbe' not found"), "{name}");
        let e = c.watch_executions(pb::WatchExecutionsRequest { job_id: "wbe".into() }).await.expect_err("unknown");
        assert_eq!(e.code(), tonic::Code::NotFound, "{name}");
        // Deleted, with its executions kept: still listed, still watchable.
        put(&node, "gone", "* * * * * *").await;
        eventually(WAIT, "an execution of gone", || {
            let mut c = c.clone();
            async move { (!executions(&mut c, "gone").await.is_empty()).then_some(()) }
        })
        .await;
        c.delete_job(pb::DeleteJobRequest { id: "gone".into() }).await.expect("delete");
        assert!(!c.list_executions(req("gone")).await.expect("kept").into_inner().executions.is_empty(), "{name}");
        c.watch_executions(pb::WatchExecutionsRequest { job_id: "gone".into() }).await.expect("watch a deleted job");
        let (code, out, err) = rota(&["exec", "list", "--job", "gone", "--endpoint", ep]);
        assert!(code == 0 && out.lines().count() >= 2, "{name}: {out} {err}");
    }
}

/// Several endpoints (comma-separated, repeated, or in ROTA_ENDPOINT) are tried in order; all dead
/// is exit 3 naming them; an empty one is a usage error. A trigger without --key fires once per
/// invocation (its made-up key differs each time).
#[tokio::test]
async fn endpoint_lists_fail_over() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    put(&node, "t", "0 0 1 1 *").await;
    let live = node.addr.clone();
    let dead = format!("127.0.0.1:{}", free_port());
    let dead2 = format!("127.0.0.1:{}", free_port());
    let list = format!("{dead},{live}");
    for args in [vec!["--endpoint", list.as_str()], vec!["--endpoint", &dead, "--endpoint", &live]] {
        let (code, out, err) = rota(&[&["job", "list"][..], &args].concat());
        assert!(code == 0 && out.contains("\nt "), "{args:?}: {out} {err}");
    }
    let out = wait_exit(
        rota_cmd(&["job", "list"])
            .env("ROTA_ENDPOINT", &list)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rota"),
        WAIT,
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\nt "),
        "ROTA_ENDPOINT list: {out:?}"
    );
    let (code, _, err) = rota(&["status", "--endpoint", &format!("{dead},{dead2}")]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: cannot reach rota at any of http://{dead}, http://{dead2}: Connection refused"
        )),
        "{err}"
    );
    let (code, _, err) = rota(&["status", "--endpoint", &format!("{live},,{dead}")]);
    assert!(code == 2 && err.contains("--endpoint: an empty endpoint"), "{err}");
    for _ in 0..2 {
        let (code, out, err) = rota(&["job", "trigger", "t", "--json", "--endpoint", &list]);
        assert_eq!((code, json_of(&out)["deduplicated"].as_bool()), (0, Some(false)), "{err}");
    }
    let mut c = node.client().await;
    let fires = eventually(WAIT, "both triggers recorded", || {
        let mut c = c.clone();
        async move {
            let e = executions(&mut c, "t").await;
            let fires: HashSet<String> = e.into_iter().map(|e| e.fire_id).collect();
            (fires.len() >= 2).then_some(fires)
        }
    })
    .await;
    assert_eq!(fires.len(), 2, "two invocations, two fires: {fires:?}");
    let _ = &mut c;
}

/// A line-per-change reader of a running `rota exec watch`.
struct Watch {
    child: std::process::Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
}

impl Watch {
    fn start(args: &[&str]) -> Watch {
        let mut child = rota_cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("rota");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let (o, e) = (out.clone(), err.clone());
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                o.lock().expect("lock").push(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut e = e.lock().expect("lock");
                e.push_str(&l);
                e.push('\n');
            }
        });
        Watch { child, out, err }
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().expect("lock").clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().expect("lock").clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `exec watch --endpoint a,b`: node a is killed and b comes up only seconds later; the watch says
/// it reconnects, and prints every change made meanwhile: every fire of a 1-s job ends up printed
/// in its final state, with no gap.
#[tokio::test]
async fn watch_reconnects_to_the_next_endpoint_without_a_gap() {
    let redis = RedisServer::start();
    let backend = Backend::Redis(redis.url());
    let mut a = TestNode::start(&backend, "a", &[]).await;
    let _c = TestNode::start(&backend, "c", &[]).await;
    let b_port = free_port();
    let b_addr = format!("127.0.0.1:{b_port}");
    put(&a, "tick", "* * * * * *").await;
    let endpoints = format!("{},{b_addr}", a.addr);
    let watch = Watch::start(&["exec", "watch", "--job", "tick", "--json", "--endpoint", &endpoints]);
    let parse = |lines: &[String]| -> HashMap<String, (String, i64)> {
        let mut last = HashMap::new();
        for l in lines {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            let id = v["id"].as_str().expect("id").to_string();
            let sched = v["scheduled_time"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            let ms = sched.map(|t| t.timestamp_millis()).unwrap_or(0);
            last.insert(id, (v["state"].as_str().expect("state").to_string(), ms));
        }
        last
    };
    let first_sched = eventually(WAIT, "the watch prints fires", || async {
        let seen = parse(&watch.lines());
        (seen.len() >= 3).then(|| seen.values().map(|(_, ms)| *ms).min().unwrap_or(0))
    })
    .await;
    a.kill();
    let killed_ms = chrono::Utc::now().timestamp_millis();
    // Fires keep coming on c while the watch has no endpoint to go to.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b = TestNode::start(&backend, "b", &["--listen", &b_addr]).await;
    eventually(WAIT, "the watch reconnects to b", || async {
        watch.stderr().contains(&format!("rota: watch reconnected to http://{b_addr}")).then_some(())
    })
    .await;
    let reconnected_ms = chrono::Utc::now().timestamp_millis();
    let mut cb = b.client().await;
    eventually(WAIT, "every fire printed in its final state", || {
        let mut cb = cb.clone();
        let watch = &watch;
        async move {
            let finals: Vec<pb::Execution> = executions(&mut cb, "tick")
                .await
                .into_iter()
                .filter(|e| {
                    let ms = common::ms(&e.scheduled_time);
                    ms >= first_sched && ms <= reconnected_ms + 2000
                })
                .collect();
            // Not done while a fire of the window is still open (a's claimed fire is reaped as lost).
            if finals
                .iter()
                .any(|e| matches!(common::state(e), pb::ExecutionState::Pending | pb::ExecutionState::Running))
            {
                return None;
            }
            let in_gap = finals.iter().filter(|e| {
                let ms = common::ms(&e.scheduled_time);
                ms > killed_ms && ms < reconnected_ms - 1000
            });
            assert!(in_gap.count() >= 2, "fires happened while the watch was away");
            let printed = parse(&watch.lines());
            let missing: Vec<String> = finals
                .iter()
                .filter(|e| printed.get(&e.id).map(|(s, _)| s.as_str()) != Some(state_name(e)))
                .map(|e| format!("{} {} {}", e.id, e.fire_id, state_name(e)))
                .collect();
            missing.is_empty().then_some(()).or_else(|| {
                eprintln!("not printed yet in the final state: {missing:?}");
                None
            })
        }
    })
    .await;
    let _ = &mut cb;
    assert!(watch.stderr().contains("reconnecting"), "{}", watch.stderr());
}

fn state_name(e: &pb::Execution) -> &'static str {
    match common::state(e) {
        pb::ExecutionState::Succeeded => "succeeded",
        pb::ExecutionState::Failed => "failed",
        pb::ExecutionState::TimedOut => "timed_out",
        pb::ExecutionState::Skipped => "skipped",
        pb::ExecutionState::Misfired => "misfired",
        pb::ExecutionState::Lost => "lost",
        pb::ExecutionState::Superseded => "superseded",
        pb::ExecutionState::Cancelled => "cancelled",
        pb::ExecutionState::Pending => "pending",
        pb::ExecutionState::Running => "running",
        pb::ExecutionState::Unspecified => "unspecified",
    }
}

/// Headers and help: `exec watch` starts with the table's header and aligned columns; pause and
/// resume say what they did; `--handler` lists the handlers.
#[tokio::test]
async fn headers_headlines_and_help() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    put(&node, "tick", "* * * * * *").await;
    let ep = node.addr.as_str();
    let watch = Watch::start(&["exec", "watch", "--job", "tick", "--endpoint", ep]);
    let lines = eventually(WAIT, "a header and two rows", || async {
        let l = watch.lines();
        (l.len() >= 3).then_some(l)
    })
    .await;
    assert!(lines[0].starts_with("ID") && lines[0].contains("STATE"), "{lines:?}");
    let col = lines[0].find("STATE").expect("STATE column");
    for row in &lines[1..] {
        let state = row.get(col..).unwrap_or_default();
        assert!(["pending", "running", "succeeded"].iter().any(|s| state.starts_with(s)), "aligned: {lines:#?}");
    }
    let (code, out, _) = rota(&["job", "pause", "tick", "--endpoint", ep]);
    assert!(code == 0 && out.starts_with("paused job tick\n") && out.contains("paused: true"), "{out}");
    let (code, out, _) = rota(&["job", "resume", "tick", "--endpoint", ep]);
    assert!(code == 0 && out.starts_with("resumed job tick\n") && out.contains("paused: false"), "{out}");
    let (_, help, _) = rota(&["job", "put", "--help"]);
    assert!(help.contains("noop, sleep, shell") && help.contains("http"), "{help}");
    let (_, help, _) = rota(&["exec", "list", "--help"]);
    assert!(help.contains("[default: 20]") && help.contains("[default: http://127.0.0.1:7700]"), "{help}");
    let (_, help, _) = rota(&["server", "--help"]);
    assert!(help.contains("--heartbeat-ms") && help.contains("(default 1000)"), "{help}");
}

/// Bad values of the flags this file is about are usage errors (exit 2) naming the flag, before
/// any call is made.
#[tokio::test]
async fn bad_flag_values_are_usage_errors() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let ep = node.addr.as_str();
    for (args, named) in [
        (vec!["exec", "list", "--limit", "0"], "--limit"),
        (vec!["exec", "list", "--limit", "1001"], "--limit"),
        (vec!["job", "list", "--limit", "0"], "--limit"),
        (vec!["job", "put", "--id", "x", "--cron", "* * * * * *", "--misfire", "fire_once_later"], "--misfire"),
        (vec!["job", "list", "--endpoint", "http://[::1"], "--endpoint 'http://[::1'"),
        (vec!["job", "list", "--endpoint", ","], "--endpoint: an empty endpoint"),
    ] {
        let args = if args.contains(&"--endpoint") { args } else { [&args[..], &["--endpoint", ep]].concat() };
        let (code, out, err) = rota(&args);
        assert_eq!((code, out.as_str()), (2, ""), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
    let mut c = node.client().await;
    let jobs = c.list_jobs(pb::ListJobsRequest::default()).await.expect("list").into_inner().jobs;
    assert!(jobs.is_empty(), "nothing was written: {jobs:?}");
}

/// A node that answers UNAVAILABLE (its Redis is down) is passed over for the next endpoint, with
/// a line on stderr; the answer is the next node's.
#[tokio::test]
async fn an_unavailable_node_is_passed_over() {
    let mut redis = RedisServer::start();
    let a = TestNode::start(&Backend::Redis(redis.url()), "a", &[]).await;
    let b = TestNode::start(&Backend::Memory, "b", &[]).await;
    put(&b, "onb", "0 0 1 1 *").await;
    redis.kill();
    let mut ca = a.client().await;
    eventually(WAIT, "a answers UNAVAILABLE", || {
        let mut ca = ca.clone();
        async move {
            let e = ca.list_jobs(pb::ListJobsRequest::default()).await.err()?;
            (e.code() == tonic::Code::Unavailable).then_some(())
        }
    })
    .await;
    let _ = &mut ca;
    let (code, out, err) = rota(&["job", "list", "--endpoint", &format!("{},{}", a.addr, b.addr)]);
    assert!(code == 0 && out.contains("\nonb "), "{out} {err}");
    // The node names its store and what it still knows (see node_table.rs); the CLI says where it goes next.
    let (from, to) =
        (format!("rota: http://{} is unavailable (store unavailable", a.addr), format!("; trying http://{}", b.addr));
    assert!(err.contains(&from) && err.contains(&to), "{err}");
    // With a single endpoint there is nowhere to go: the call fails (exit 1).
    let (code, _, err) = rota(&["job", "list", "--endpoint", &a.addr]);
    assert!(code == 1 && err.starts_with("error: Unavailable: store unavailable: redis at "), "{code} {err}");
}
