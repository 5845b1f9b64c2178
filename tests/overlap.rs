//! Overlap policies (issue 17, PROTOCOL §3.20) through real nodes, a real `redis-server` and real
//! shell processes: jobs whose runs (2.5 s) outlast their period (1 s) under `replace`,
//! `buffer_one` and `buffer 3`, on three nodes, through a kill of the master. Each run notes its
//! start and its end in a side log of its own; the checks read it beside rota's records: a job's
//! runs never overlap, every fire ends (nothing is left held), a replaced run is stopped and
//! recorded `cancelled` by the fire that replaced it, a buffered fire runs after the one before it
//! ended, and a fire that finds the buffer full is `skipped` saying so. (The store's part, on both
//! stores, is in `store_conformance.rs`; the chaos runner's workload has these jobs too.)
#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{eventually, rota, text, Backend, RedisServer, TestNode};
use rota::pb;
use serde_json::json;

/// A run of 2.5 s that notes its start and its end (`done`, or `term` when stopped) in `log`.
fn script(log: &Path) -> String {
    let l = log.display();
    let line = |what: &str| format!("echo \"{what} $ROTA_FIRE_ID $ROTA_EXECUTION_ID $(date +%s%3N)\" >> {l}");
    format!("{}; trap '{}; exit 143' TERM; sleep 2.5 & wait; {}", line("S"), line("E term"), line("E done"))
}

/// One run from a side log: (fire, execution, start ms, end ms and how it ended).
#[derive(Debug, Clone)]
struct Run {
    fire: String,
    exec: String,
    start: i64,
    end: Option<(i64, String)>,
}

fn runs(log: &Path) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        match line.split(' ').collect::<Vec<_>>().as_slice() {
            ["S", fire, exec, at] => out.push(Run {
                fire: fire.to_string(),
                exec: exec.to_string(),
                start: at.parse().expect("ms"),
                end: None,
            }),
            ["E", how, _fire, exec, at] => {
                let run = out.iter_mut().find(|r| r.exec == *exec).expect("an end after its start");
                run.end = Some((at.parse().expect("ms"), how.to_string()));
            }
            other => panic!("a side-log line of no known form: {other:?}"),
        }
    }
    out.sort_by_key(|r| r.start);
    out
}

/// The runs of one job never overlap: each starts after the one before it ended.
fn assert_no_overlap(job: &str, runs: &[Run]) {
    for w in runs.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let end = a.end.as_ref().map(|(t, _)| *t).unwrap_or_else(|| panic!("{job}: {a:?} never ended"));
        assert!(b.start >= end, "{job}: {} started at {} while {} ran until {end}", b.fire, b.start, a.fire);
    }
}

fn state_of(e: &pb::Execution) -> String {
    common::state(e).as_str_name().trim_start_matches("EXECUTION_STATE_").to_lowercase()
}

/// Three nodes on one Redis; the jobs run on the two that are not master (routing `failover`), and
/// the master is killed halfway. Then the jobs are paused, the fires held meanwhile run out, and
/// the side logs and the records are checked.
#[tokio::test]
async fn each_policy_with_long_runs_and_fast_fires_through_a_master_kill() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let shell = ["--enable-shell", "--shell-allow", "/bin/sh"];
    let mut nodes = [
        TestNode::start(&b, "n1", &shell).await,
        TestNode::start(&b, "n2", &shell).await,
        TestNode::start(&b, "n3", &shell).await,
    ];
    let (master, _) = common::agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let others: Vec<String> = nodes.iter().map(|n| n.node_id.clone()).filter(|n| *n != master).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs: [(&str, &[&str]); 3] = [
        ("rep", &["--concurrency", "replace"]),
        ("one", &["--concurrency", "buffer_one"]),
        ("three", &["--concurrency", "buffer", "--buffer-limit", "3"]),
    ];
    let ai = nodes.iter().position(|n| n.node_id != master).expect("a node that is not master");
    let asked = &nodes[ai];
    for (id, policy) in jobs {
        let args = json!({"sh": script(&dir.path().join(id))}).to_string();
        let base = ["job", "put", "--id", id, "--cron", "* * * * * *", "--handler", "shell", "--args", &args];
        let route = ["--routing", "failover", "--failover-node", &others[0], "--failover-node", &others[1]];
        let o = rota(asked, &[&base[..], policy, &route[..]].concat()).await;
        assert_eq!(o.status.code(), Some(0), "put {id}: {}", text(&o));
    }
    // The API says what was put.
    let got = asked.client().await.get_job(pb::GetJobRequest { id: "three".into() }).await.expect("get");
    let j = got.into_inner().job.expect("job");
    assert_eq!((j.concurrency, j.buffer_limit), (pb::ConcurrencyPolicy::Buffer as i32, 3));
    let got = asked.client().await.get_job(pb::GetJobRequest { id: "one".into() }).await.expect("get");
    let j = got.into_inner().job.expect("job");
    assert_eq!((j.concurrency, j.buffer_limit), (pb::ConcurrencyPolicy::BufferOne as i32, 0));

    tokio::time::sleep(Duration::from_secs(6)).await;
    nodes.iter_mut().find(|n| n.node_id == master).expect("master").kill();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let asked = &nodes[ai];
    for (id, _) in jobs {
        let o = rota(asked, &["job", "pause", id]).await;
        assert_eq!(o.status.code(), Some(0), "pause {id}: {}", text(&o));
    }
    // Everything held runs out: no record stays open.
    let mut records: BTreeMap<&str, Vec<pb::Execution>> = BTreeMap::new();
    for (id, _) in jobs {
        let execs = eventually(Duration::from_secs(40), "every fire ends", || async {
            let execs = common::executions(&mut asked.client().await, id).await;
            execs
                .iter()
                .all(|e| {
                    common::state(e) != pb::ExecutionState::Pending && common::state(e) != pb::ExecutionState::Running
                })
                .then_some(execs)
        })
        .await;
        records.insert(id, execs);
    }
    // Side-log runs all end (the last one's end line may come a moment after its record).
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (id, _) in jobs {
        let execs = &records[id];
        let runs = runs(&dir.path().join(id));
        assert_no_overlap(id, &runs);
        let mut states: BTreeMap<String, usize> = BTreeMap::new();
        for e in execs {
            *states.entry(state_of(e)).or_default() += 1;
        }
        eprintln!("{id}: {} fires, {} runs, {states:?}", execs.len(), runs.len());
        assert!(execs.len() >= 12, "{id}: {} fires in 14 s", execs.len());
        // Every run is one of rota's records, with the outcome its side log says.
        for run in &runs {
            let rec = execs.iter().find(|e| e.id == run.exec).unwrap_or_else(|| panic!("{id}: {run:?} has no record"));
            let how = run.end.as_ref().map(|(_, h)| h.as_str());
            match (state_of(rec).as_str(), how) {
                ("succeeded", Some("done")) => {}
                ("cancelled", Some("term")) if id == "rep" => {}
                other => panic!("{id}: run {run:?} recorded {:?} ({}): {other:?}", rec.state, rec.error),
            }
        }
        let ran: usize = states.get("succeeded").copied().unwrap_or(0) + states.get("cancelled").copied().unwrap_or(0);
        let begun = execs.iter().filter(|e| e.start_time.is_some()).count();
        assert_eq!(ran, begun, "{id}: every run that began is in the side log, and every one ended");
        assert_eq!(runs.len(), begun, "{id}: one run a begun fire: {runs:?}");
        for e in execs {
            match (id, state_of(e).as_str()) {
                (_, "succeeded") => {}
                ("rep", "cancelled") => {
                    assert!(e.error.contains("replaced by a newer fire"), "{id}: {e:?}");
                }
                ("rep", "skipped") => {
                    assert!(e.error.contains("replaced by a newer fire"), "{id}: {e:?}");
                }
                ("one", "skipped") => assert!(e.error.contains("a fire already waits"), "{id}: {e:?}"),
                ("three", "skipped") => assert!(e.error.contains("3 fires already wait"), "{id}: {e:?}"),
                (_, other) => panic!("{id}: a fire ended {other}: {e:?}"),
            }
        }
        if id != "rep" {
            // Held fires run oldest first, each when the one before it ends: handed on by that
            // run's finish into its node's queue, not left for the master's sweep (every 3 s).
            let sched = |r: &Run| r.fire.rsplit_once('@').and_then(|(_, t)| t.parse::<i64>().ok()).unwrap_or(0);
            assert!(runs.windows(2).all(|w| sched(&w[0]) < sched(&w[1])), "{id}: not oldest first: {runs:?}");
            let gaps: Vec<i64> =
                runs.windows(2).map(|w| w[1].start - w[0].end.as_ref().map_or(0, |(t, _)| *t)).collect();
            eprintln!("{id}: from a run's end to the next run's start, ms: {gaps:?}");
            assert!(gaps.iter().filter(|g| **g > 2_000).count() <= 1, "{id}: {gaps:?}");
        }
        match id {
            // Each fire replaces the run before it: most runs are stopped, the last one is not.
            "rep" => {
                assert!(states.get("cancelled").copied().unwrap_or(0) >= 8, "{id}: {states:?}");
                assert_eq!(runs.last().and_then(|r| r.end.clone()).map(|(_, h)| h).as_deref(), Some("done"));
            }
            // 2.5 s runs, a fire a second: about two in five run, the rest find the buffer full.
            "one" => {
                assert!(states.get("skipped").copied().unwrap_or(0) >= 4, "{id}: {states:?}");
                assert!(runs.len() >= 5, "{id}: {} runs", runs.len());
            }
            // The buffer fills in the first seconds; then every third fire or so is skipped.
            "three" => {
                assert!(states.get("skipped").copied().unwrap_or(0) >= 2, "{id}: {states:?}");
                assert!(runs.len() >= 7, "{id}: {} runs", runs.len());
            }
            _ => unreachable!(),
        }
    }
    // The replaced runs' node was asked directly by the master (StopRun), besides its stop list.
    let runner = nodes.iter().find(|n| n.node_id == others[0]).expect("runner");
    assert!(runner.log().contains("StopRun from a peer"), "{}", runner.log());
}

/// Bad input: the policy's limit is refused where it does not belong, and a buffer needs one, with
/// the field named, through the API and the CLI; nothing is written.
#[tokio::test]
async fn buffer_limits_are_checked() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let mut c = node.client().await;
    let cases = [
        (pb::ConcurrencyPolicy::Buffer, 0, "buffer_limit"),
        (pb::ConcurrencyPolicy::Buffer, 101, "buffer_limit"),
        (pb::ConcurrencyPolicy::Forbid, 2, "buffer_limit"),
        (pb::ConcurrencyPolicy::Replace, 1, "buffer_limit"),
        (pb::ConcurrencyPolicy::BufferOne, 2, "buffer_limit"),
    ];
    for (policy, limit, field) in cases {
        let mut job = common::job("b", "* * * * * *", "noop", serde_json::Value::Null);
        job.concurrency = policy as i32;
        job.buffer_limit = limit;
        let e = c.put_job(pb::PutJobRequest { job: Some(job) }).await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{policy:?} {limit}: {e:?}");
        assert!(e.message().starts_with(&format!("{field}: ")), "{policy:?} {limit}: {}", e.message());
    }
    let mut job = common::job("b", "* * * * * *", "noop", serde_json::Value::Null);
    job.concurrency = 9;
    let e = c.put_job(pb::PutJobRequest { job: Some(job) }).await.expect_err("refused");
    assert!(e.message().starts_with("concurrency: "), "{}", e.message());
    assert!(c.get_job(pb::GetJobRequest { id: "b".into() }).await.is_err(), "nothing was written");
    // BUFFER with 1 is BUFFER_ONE.
    let mut job = common::job("b", "* * * * * *", "noop", serde_json::Value::Null);
    job.concurrency = pb::ConcurrencyPolicy::Buffer as i32;
    job.buffer_limit = 1;
    c.put_job(pb::PutJobRequest { job: Some(job) }).await.expect("put");
    let j = c.get_job(pb::GetJobRequest { id: "b".into() }).await.expect("get").into_inner().job.expect("job");
    assert_eq!((j.concurrency, j.buffer_limit), (pb::ConcurrencyPolicy::BufferOne as i32, 0));

    let base = ["job", "put", "--id", "c", "--cron", "* * * * * *", "--handler", "noop"];
    let o = rota(&node, &[&base[..], &["--concurrency", "buffer"]].concat()).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--buffer-limit"), "{}", text(&o));
    let o = rota(&node, &[&base[..], &["--concurrency", "forbid", "--buffer-limit", "2"]].concat()).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--buffer-limit"), "{}", text(&o));
    let o = rota(&node, &[&base[..], &["--concurrency", "buffer", "--buffer-limit", "4"]].concat()).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = c.get_job(pb::GetJobRequest { id: "c".into() }).await.expect("get").into_inner().job.expect("job");
    assert_eq!((j.concurrency, j.buffer_limit), (pb::ConcurrencyPolicy::Buffer as i32, 4));
}
