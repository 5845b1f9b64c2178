//! Schedules beyond cron (issue 16) through real nodes, a real `redis-server`, real shell processes
//! and the real `rota` binary: an `every` grid keeps its instants through a master kill; a one-shot
//! `at` whose master is killed at its instant runs once and the job is then completed; bounds stop
//! a schedule and say so; the spread moves every fire by the job's offset; the preview
//! (PreviewSchedule, `rota job next`) names what the scheduler fires; bad input is refused with the
//! field named and nothing written, through the API, the CLI and a jobs file. (The instants
//! themselves, daylight saving and the spread are table-tested in `job::schedule`; that the preview
//! equals what `plan` claims is a property in `properties.rs`; the chaos runner's `every` jobs are
//! in `chaos.rs`.)
#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{agreed_master, eventually, executions, rota, state, text, Backend, RedisServer, TestNode};
use rota::pb;
use serde_json::{json, Value};
use tonic::Code;

const SHELL: [&str; 3] = ["--enable-shell", "--shell-allow", "/bin/sh"];
const WAIT: Duration = Duration::from_secs(40);

/// The shell a job runs: "<instant> <node> <attempt> start" into `log`, then `body`, then the same
/// line with "end".
fn logging(log: &Path, body: &str) -> String {
    let line = "$ROTA_SCHEDULED_AT_MS $ROTA_NODE_ID $ROTA_ATTEMPT";
    let log = log.display();
    json!({ "sh": format!("echo \"{line} start\" >> {log}; {body}; echo \"{line} end\" >> {log}") }).to_string()
}

/// Per instant, the nodes whose run of it got to `what` ("start" or "end").
fn runs(log: &Path, what: &str) -> BTreeMap<i64, Vec<String>> {
    let mut m: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for l in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if let (Some(Ok(at)), Some(node), Some(w)) = (f.first().map(|s| s.parse()), f.get(1), f.get(3)) {
            if *w == what {
                m.entry(at).or_default().push(node.to_string());
            }
        }
    }
    m
}

async fn put(node: &TestNode, args: &[&str]) {
    let o = rota(node, &[&["job", "put"], args].concat()).await;
    assert_eq!(o.status.code(), Some(0), "put {args:?}: {}", text(&o));
}

/// Three nodes on one Redis with shell, each seeing the other two live.
async fn three(redis: &RedisServer) -> Vec<TestNode> {
    common::three_live(redis, &SHELL).await
}

fn rfc3339(ms: i64) -> String {
    rota::job::schedule::rfc3339(ms)
}

async fn preview(
    node: &TestNode,
    target: pb::preview_schedule_request::Target,
    count: u32,
) -> pb::PreviewScheduleResponse {
    let req = pb::PreviewScheduleRequest { target: Some(target), count, after: None };
    node.client().await.preview_schedule(req).await.expect("preview").into_inner()
}

fn times(r: &pb::PreviewScheduleResponse) -> Vec<i64> {
    r.fires.iter().map(|f| common::ms(&f.time)).collect()
}

/// `every 2s` on a grid anchored 700 ms past a second: each instant of the grid from the first run
/// to the last runs once, none off the grid, through a SIGKILL of the master (the new master
/// claims the instants the dead one left, each once: they are the same grid). The preview asked
/// before the runs named the instants that ran.
#[tokio::test]
async fn an_every_grid_keeps_its_instants_once_each_through_a_master_kill() {
    let redis = RedisServer::start();
    let mut nodes = three(&redis).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let anchor = (rota::clock::now_ms() / 1000 + 3) * 1000 + 700;
    let args = logging(&log, "true");
    let anchor_text = rfc3339(anchor);
    put(&nodes[0], &["--id", "grid", "--every", "2s", "--anchor", &anchor_text, "--handler", "shell", "--args", &args])
        .await;
    let planned = times(&preview(&nodes[1], pb::preview_schedule_request::Target::JobId("grid".into()), 3).await);
    assert_eq!(planned, [anchor, anchor + 2000, anchor + 4000]);
    eventually(WAIT, "three instants ran", || async { (runs(&log, "end").len() >= 3).then_some(()) }).await;
    let (master, _) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let victim = nodes.iter().position(|n| n.node_id == master).expect("master");
    nodes[victim].kill();
    let killed_at = rota::clock::now_ms();
    let left: Vec<&TestNode> = nodes.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, n)| n).collect();
    eventually(WAIT, "three instants ran after the kill", || async {
        (runs(&log, "end").keys().filter(|t| **t > killed_at + 2000).count() >= 3).then_some(())
    })
    .await;
    let o = rota(left[0], &["job", "pause", "grid"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Recovery `lost` (the default): a run the kill cut short is not run again, so every instant
    // of the grid started exactly once.
    let started = runs(&log, "start");
    let first = *started.keys().next().expect("runs");
    let last = *started.keys().next_back().expect("runs");
    assert_eq!(first, anchor, "the grid starts at its anchor: {started:?}");
    let mut t = first;
    while t <= last {
        assert_eq!(started.get(&t).map(Vec::len), Some(1), "instant {t} started once: {started:?}");
        t += 2000;
    }
    assert!(started.keys().all(|t| (t - anchor) % 2000 == 0), "every run is on the grid: {started:?}");
    // The records agree: one succeeded execution per instant, fire ids the instants.
    let execs = executions(&mut left[0].client().await, "grid").await;
    let mut by_fire: BTreeMap<String, usize> = BTreeMap::new();
    for e in execs.iter().filter(|e| state(e) == pb::ExecutionState::Succeeded) {
        *by_fire.entry(e.fire_id.clone()).or_default() += 1;
    }
    assert!(by_fire.values().all(|n| *n == 1), "{by_fire:?}");
    assert!(by_fire.contains_key(&format!("grid@{anchor}")), "{by_fire:?}");
}

/// An `after_previous` chain (1 s after each run of 2 s ends) on three nodes, its master SIGKILLed
/// while the chain runs: no two runs overlap, each run starts at least the delay after the one
/// before ended, every fire's instant is the previous record's end plus the delay, none starts
/// twice, and the chain goes on past the kill (a run the kill cut short is recorded lost, and the
/// chain follows its end). A re-put while a run is going leaves the chain waiting for it, and the
/// job says which fire it waits for.
#[tokio::test]
async fn an_after_previous_chain_never_overlaps_and_goes_on_through_a_master_kill() {
    let redis = RedisServer::start();
    let mut nodes = three(&redis).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let line = |what: &str| format!("echo \"$ROTA_SCHEDULED_AT_MS $(date +%s%3N) {what}\" >> {}", log.display());
    let args = json!({ "sh": format!("{}; sleep 2; {}", line("start"), line("end")) }).to_string();
    let job = ["--id", "chain", "--after-previous", "1s", "--handler", "shell", "--args", &args];
    put(&nodes[0], &job).await;
    // (instant, wall ms) of each line of `what`.
    let lines = |what: &str| -> Vec<(i64, i64)> {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let mut v: Vec<(i64, i64)> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.get(2) == Some(&what)).then(|| Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?)))?
            })
            .collect();
        v.sort();
        v
    };
    eventually(WAIT, "a run is going", || async { (lines("start").len() > lines("end").len()).then_some(()) }).await;
    // Put again while it runs: still waiting on that run, no second one started beside it.
    put(&nodes[1], &job).await;
    let mut c = nodes[1].client().await;
    let j = c.get_job(pb::GetJobRequest { id: "chain".into() }).await.expect("get").into_inner().job.expect("job");
    let waiting = common::ms(&j.waiting_for_fire);
    assert!(waiting > 0 && j.next_fire_time.is_none() && !j.completed, "{j:?}");
    eventually(WAIT, "three runs ended", || async { (lines("end").len() >= 3).then_some(()) }).await;
    let (master, _) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let victim = nodes.iter().position(|n| n.node_id == master).expect("master");
    nodes[victim].kill();
    let killed_at = rota::clock::now_ms();
    let left: Vec<&TestNode> = nodes.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, n)| n).collect();
    eventually(WAIT, "three runs after the kill", || async {
        (lines("end").iter().filter(|(_, at)| *at > killed_at).count() >= 3).then_some(())
    })
    .await;
    let o = rota(left[0], &["job", "pause", "chain"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (starts, ends) = (lines("start"), lines("end"));
    let instants: Vec<i64> = starts.iter().map(|(t, _)| *t).collect();
    let mut once = instants.clone();
    once.dedup();
    assert_eq!(once, instants, "no instant started twice: {starts:?}");
    assert!(instants.contains(&waiting), "the fire it waited on ran: {waiting} in {instants:?}");
    // By the runs themselves: each starts at least a second after the one before ended (a run cut
    // by the kill has no end line: the next starts after it all the same, by start order).
    let mut by_start: Vec<(i64, i64)> = starts.clone();
    by_start.sort_by_key(|(_, at)| *at);
    for w in by_start.windows(2) {
        let (prev, next) = (w[0], w[1]);
        if let Some((_, end)) = ends.iter().find(|(t, _)| *t == prev.0) {
            assert!(next.1 >= end + 1000, "run {} started {} ms after run {} ended", next.0, next.1 - end, prev.0);
        }
        assert!(next.1 > prev.1 + 1000, "runs {} and {} overlap or crowd: {starts:?}", prev.0, next.0);
    }
    // By the records: each fire's instant is the previous fire's recorded end plus the delay.
    let mut execs = executions(&mut left[0].client().await, "chain").await;
    execs.sort_by_key(|e| common::ms(&e.scheduled_time));
    for w in execs.windows(2) {
        let end = common::ms(&w[0].end_time);
        assert!(end > 0, "{:?}", w[0]);
        if state(&w[0]) == pb::ExecutionState::Succeeded {
            assert_eq!(common::ms(&w[1].scheduled_time), end + 1000, "{:?} then {:?}", w[0], w[1]);
        } else {
            // A run cut by the kill: the chain follows from when its loss was found.
            assert!(common::ms(&w[1].scheduled_time) >= end + 1000, "{:?} then {:?}", w[0], w[1]);
        }
    }
    assert!(execs.iter().any(|e| common::ms(&e.scheduled_time) > killed_at), "the chain went on: {execs:?}");
}

/// A jitter of 1.5 s on an `every 2s` job (real Redis, real shell runs): each fire starts its own
/// delay after its instant, the one its fire id gives (`fire_jitter_ms`), which its record says and
/// the preview showed beforehand; a jitter over 30 s is refused naming the field.
#[tokio::test]
async fn a_jitter_delays_each_fire_by_its_own_recorded_amount() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &SHELL).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let args = logging(&log, "true");
    put(&node, &["--id", "jit", "--every", "2s", "--jitter", "1500ms", "--handler", "shell", "--args", &args]).await;
    let mut c = node.client().await;
    let planned = preview(&node, pb::preview_schedule_request::Target::JobId("jit".into()), 3).await;
    let jitter = |t: i64| rota::job::schedule::fire_jitter_ms(&format!("jit@{t}"), 1500);
    for f in &planned.fires {
        let t = common::ms(&f.time);
        let want = format!("jitter: starts {} after it", rota::job::schedule::length_text(jitter(t)));
        assert!(f.notes.contains(&want), "{want} in {:?}", f.notes);
    }
    eventually(WAIT, "four fires ran", || async { (runs(&log, "end").len() >= 4).then_some(()) }).await;
    let execs = executions(&mut c, "jit").await;
    let done: Vec<&pb::Execution> = execs.iter().filter(|e| state(e) == pb::ExecutionState::Succeeded).collect();
    assert!(done.len() >= 4, "{execs:?}");
    for e in &done {
        let t = common::ms(&e.scheduled_time);
        let j = e.jitter.as_ref().map_or(0, |d| d.seconds as u64 * 1000 + d.nanos as u64 / 1_000_000);
        assert_eq!(j, jitter(t), "{e:?}");
        assert!(
            common::ms(&e.start_time) >= t + j as i64,
            "started {} ms after its instant, jitter {j}: {e:?}",
            common::ms(&e.start_time) - t
        );
    }
    assert!(
        done.iter().map(|e| jitter(common::ms(&e.scheduled_time))).collect::<std::collections::HashSet<_>>().len() > 1
    );
    let e = c
        .put_job(pb::PutJobRequest {
            job: Some(pb::Job {
                id: "jit2".into(),
                handler: "noop".into(),
                schedule: Some(pb::job::Schedule::Cron("@daily".into())),
                jitter: Some(prost_types::Duration { seconds: 61, nanos: 0 }),
                ..Default::default()
            }),
        })
        .await
        .expect_err("refused");
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "jitter: 1m1s is more than 30s"));
    let o =
        rota(&node, &["job", "put", "--id", "jit2", "--cron", "@daily", "--jitter", "2m", "--handler", "noop"]).await;
    assert!(o.status.code() == Some(1) && text(&o).contains("jitter: 2m is more than 30s"), "{}", text(&o));
}

/// BackfillJob (`rota job backfill`) of an `every 1m` job over a past range: each instant runs
/// once, as a fire whose id is the instant; a second backfill of the same range runs nothing (every
/// instant ALREADY_FIRED), one over a wider range runs only the new instants; a dry run runs
/// nothing; closing the stream cancels the rest. Bad input is refused naming the field.
#[tokio::test]
async fn a_backfill_runs_each_past_instant_once_and_a_second_runs_nothing() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &SHELL).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let args = logging(&log, "true");
    // Paused: only the backfills run it (a paused job can be backfilled).
    put(&node, &["--id", "grid", "--every", "1m", "--paused", "--handler", "shell", "--args", &args]).await;
    let minute = 60_000;
    let base = rota::clock::now_ms() / minute * minute - 60 * minute;
    let (from, to) = (rfc3339(base + 10 * minute), rfc3339(base + 14 * minute + 30_000));
    let backfill = |from: String, to: String, extra: &'static [&'static str]| {
        let node = &node;
        async move {
            let o = rota(
                node,
                &[&["job", "backfill", "grid", "--from", &from, "--to", &to, "--rate", "100"][..], extra].concat(),
            )
            .await;
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
            String::from_utf8_lossy(&o.stdout).to_string()
        }
    };
    let out = backfill(from.clone(), to.clone(), &[]).await;
    assert_eq!(out.matches(" started ").count(), 5, "{out}");
    let want: Vec<i64> = (10..15).map(|m| base + m * minute).collect();
    eventually(WAIT, "five instants ran", || async { (runs(&log, "end").len() == 5).then_some(()) }).await;
    assert_eq!(runs(&log, "end").keys().copied().collect::<Vec<_>>(), want);
    // Again: nothing runs twice.
    let out = backfill(from.clone(), to.clone(), &[]).await;
    assert_eq!(out.matches(" already_fired").count(), 5, "{out}");
    // Wider, and a dry run of it: only the two new instants run.
    let wider = rfc3339(base + 8 * minute);
    // A dry run is not paced: seven instants at a fire a second would take six seconds.
    let began = std::time::Instant::now();
    let o = rota(&node, &["job", "backfill", "grid", "--from", &wider, "--to", &to, "--rate", "1", "--dry-run"]).await;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(out.matches(" would_run").count(), 7, "{}", text(&o));
    assert!(began.elapsed() < Duration::from_secs(5), "a dry run took {:?}", began.elapsed());
    let out = backfill(wider, to, &[]).await;
    assert_eq!((out.matches(" started ").count(), out.matches(" already_fired").count()), (2, 5), "{out}");
    eventually(WAIT, "seven instants ran", || async { (runs(&log, "end").len() == 7).then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(runs(&log, "start").values().all(|n| n.len() == 1), "{:?}", runs(&log, "start"));
    // The records are the instants' fires.
    let mut c = node.client().await;
    let execs = executions(&mut c, "grid").await;
    assert_eq!(execs.len(), 7, "{execs:?}");
    assert!(execs.iter().all(|e| !e.manual && e.fire_id == format!("grid@{}", common::ms(&e.scheduled_time))));

    // Cancelled by closing the stream: at a fire a second, two read, the rest never run.
    let req = |from: i64, to: i64, rate: u32| pb::BackfillJobRequest {
        job_id: "grid".into(),
        from: Some(rota::pb::timestamp(from)),
        to: Some(rota::pb::timestamp(to)),
        rate,
        dry_run: false,
    };
    let mut stream =
        c.backfill_job(req(base - 30 * minute, base - 11 * minute, 1)).await.expect("backfill").into_inner();
    for _ in 0..2 {
        let m = stream.message().await.expect("message").expect("a message");
        assert_eq!((m.outcome, m.total), (pb::BackfillOutcome::Started as i32, 20));
    }
    drop(stream);
    // Uncancelled, one more would start every second (20 in all); cancelled, a few at most start
    // before the node sees the stream gone, then none.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ran = runs(&log, "start").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = runs(&log, "start").len();
    assert!(
        ran >= 9 && later == ran && later <= 12,
        "7 before, 2 read, a few in flight, then none: {ran} then {later}"
    );

    // Bad input: the field named, nothing run.
    let now = rota::clock::now_ms();
    let cases = [
        (req(base, base - 1, 0), Code::InvalidArgument, "to: is before from"),
        (req(base, now + 3_600_000, 0), Code::InvalidArgument, "to: is in the future"),
        (req(base, base + minute, 101), Code::InvalidArgument, "rate: 101 is more than 100"),
        (pb::BackfillJobRequest { from: None, ..req(base, base, 0) }, Code::InvalidArgument, "from: is required"),
        (req(now - 25 * 3_600_000, base, 0), Code::InvalidArgument, "from: is older than the execution retention (1d)"),
        (req(now - 23 * 3_600_000, base, 0), Code::InvalidArgument, "to: the range holds more than 1000"),
        (pb::BackfillJobRequest { job_id: "nope".into(), ..req(base, base, 0) }, Code::NotFound, ""),
        (pb::BackfillJobRequest { job_id: "bad id!".into(), ..req(base, base, 0) }, Code::InvalidArgument, "id"),
    ];
    for (r, code, want) in cases {
        let e = c.backfill_job(r.clone()).await.map(|_| ()).expect_err("refused");
        assert_eq!(e.code(), code, "{r:?}: {e:?}");
        assert!(e.message().contains(want), "{r:?}: {}", e.message());
    }
    put(&node, &["--id", "chain", "--after-previous", "1m", "--handler", "noop"]).await;
    let e = c.backfill_job(pb::BackfillJobRequest { job_id: "chain".into(), ..req(base, base + minute, 0) }).await;
    assert_eq!(e.map(|_| ()).expect_err("refused").code(), Code::FailedPrecondition);
    assert_eq!(runs(&log, "start").len(), ran, "nothing ran");
}

/// A one-shot `at` whose master is SIGKILLed half a second before its instant: the new master
/// claims the instant it left (late, under the misfire threshold) and it runs once; the job is then
/// completed: no next fire, the API says
/// `completed`, `rota job list` and `rota job next` say so. Re-putting it with the past instant is
/// refused naming `at`.
#[tokio::test]
async fn a_one_shot_runs_once_through_its_masters_death_and_the_job_is_then_completed() {
    let redis = RedisServer::start();
    let mut nodes = three(&redis).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let at = (rota::clock::now_ms() / 1000 + 5) * 1000;
    let args = logging(&log, "sleep 1");
    let at_text = rfc3339(at);
    put(&nodes[0], &["--id", "once", "--at", &at_text, "--handler", "shell", "--args", &args]).await;
    let (master, _) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let victim = nodes.iter().position(|n| n.node_id == master).expect("master");
    let wait = (at - 500 - rota::clock::now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    nodes[victim].kill();
    let left: Vec<&TestNode> = nodes.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, n)| n).collect();
    let fire = format!("once@{at}");
    let done = eventually(Duration::from_secs(60), "the one-shot fire succeeded", || async {
        let execs = executions(&mut left[0].client().await, "once").await;
        execs.iter().any(|e| state(e) == pb::ExecutionState::Succeeded).then_some(execs)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let succeeded: Vec<&pb::Execution> = done.iter().filter(|e| state(e) == pb::ExecutionState::Succeeded).collect();
    assert_eq!((succeeded.len(), done.len()), (1, 1), "{done:?}");
    assert_eq!(runs(&log, "start").get(&at).map(Vec::len), Some(1), "one run started: {:?}", runs(&log, "start"));
    assert_eq!(succeeded[0].fire_id, fire);
    assert_eq!(
        runs(&log, "end").get(&at).map(Vec::len),
        Some(1),
        "one run ended: {:?}; killed {}; {done:#?}",
        runs(&log, "end"),
        nodes[victim].node_id
    );
    let job = left[0].client().await.get_job(pb::GetJobRequest { id: "once".into() }).await.expect("get").into_inner();
    let job = job.job.expect("job");
    assert!(job.completed && job.next_fire_time.is_none(), "{job:?}");
    let list = rota(left[1], &["job", "list"]).await;
    let row = text(&list).lines().find(|l| l.starts_with("once")).map(str::to_string).unwrap_or_default();
    assert!(row.contains("completed") && row.contains(&format!("at {at_text}")), "{}", text(&list));
    let next = rota(left[1], &["job", "next", "once"]).await;
    assert_eq!(next.status.code(), Some(0), "{}", text(&next));
    assert!(text(&next).contains("no fire left: the schedule has ended"), "{}", text(&next));
    let again = rota(left[0], &["job", "put", "--id", "once", "--at", &at_text, "--handler", "noop"]).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains(&format!("at: {at_text} is in the past: the job would never fire")),
        "{}",
        text(&again)
    );
}

/// `every 1s` between a start and an end three seconds later: it fires on the instants of that
/// window only, then is completed; its preview ended with "last fire: end_time is ...". A spread
/// moves each fire of a 4 s grid by the job's offset, the one PreviewSchedule reports.
#[tokio::test]
async fn bounds_and_spread_shape_the_fires_a_node_makes() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &SHELL).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let start = (rota::clock::now_ms() / 1000 + 3) * 1000;
    let end = start + 3000;
    let args = logging(&log, "true");
    let (s, e) = (rfc3339(start), rfc3339(end));
    put(
        &node,
        &[
            "--id",
            "window",
            "--every",
            "1s",
            "--start-time",
            &s,
            "--end-time",
            &e,
            "--handler",
            "shell",
            "--args",
            &args,
        ],
    )
    .await;
    let p = preview(&node, pb::preview_schedule_request::Target::JobId("window".into()), 10).await;
    assert_eq!(times(&p), [start, start + 1000, start + 2000, start + 3000]);
    assert_eq!(p.fires[3].notes, [format!("last fire: end_time is {e}")]);
    let job = eventually(WAIT, "the window's job is completed", || async {
        let j = node.client().await.get_job(pb::GetJobRequest { id: "window".into() }).await.ok()?.into_inner().job?;
        j.completed.then_some(j)
    })
    .await;
    assert!(job.next_fire_time.is_none());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ran: Vec<i64> = runs(&log, "end").into_keys().collect();
    assert_eq!(ran, [start, start + 1000, start + 2000, start + 3000]);

    // Spread: a grid of 4 s, every fire moved by the same offset below 4 s.
    let spread_log = dir.path().join("spread");
    let args = logging(&spread_log, "true");
    put(&node, &["--id", "spread-me", "--every", "4s", "--spread", "4s", "--handler", "shell", "--args", &args]).await;
    let p = preview(&node, pb::preview_schedule_request::Target::JobId("spread-me".into()), 2).await;
    let offset = p.spread_offset.map(|d| d.seconds * 1000).unwrap_or(0);
    assert_eq!(offset, rota::job::schedule::spread_offset_ms("spread-me", 4_000));
    assert!(times(&p).iter().all(|t| t.rem_euclid(4_000) == offset), "{p:?}");
    let ran = eventually(Duration::from_secs(30), "two spread fires ran", || async {
        let r = runs(&spread_log, "end");
        (r.len() >= 2).then_some(r)
    })
    .await;
    assert!(ran.keys().all(|t| t.rem_euclid(4_000) == offset), "offset {offset}: {ran:?}");
    // What the preview named ran, up to the last run (its first instant may have been claimed
    // before the preview was asked, which then starts at the next).
    let last = *ran.keys().next_back().expect("runs");
    assert!(times(&p).iter().filter(|t| **t <= last).all(|t| ran.contains_key(t)), "{p:?} {ran:?}");
}

/// `rota job next` for a schedule not yet put: an interval in New York across the spring-forward
/// change (its local time moves, and the notes say so), a cron in the gap (fires when the clocks
/// jump), `--json`; and PreviewSchedule's refusals.
#[tokio::test]
async fn the_preview_of_a_schedule_not_yet_put_shows_daylight_saving_and_refuses_bad_input() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let o = rota(
        &node,
        &[
            "job",
            "next",
            "--every",
            "1d",
            "--anchor",
            "2026-03-06T09:00",
            "--tz",
            "America/New_York",
            "--count",
            "3",
            "--from",
            "2026-03-05",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("2026-03-06T09:00:00-05:00") && out.contains("2026-03-08T10:00:00-04:00"), "{out}");
    assert!(out.contains("daylight saving: local time moves by 1h (an interval is absolute time)"), "{out}");
    let o = rota(
        &node,
        &[
            "job",
            "next",
            "--json",
            "--cron",
            "0 30 2 * * *",
            "--tz",
            "America/New_York",
            "--from",
            "2026-03-07T12:00",
            "--count",
            "2",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["time_zone"], "America/New_York");
    assert_eq!(v["fires"][0]["local_time"], "2026-03-08T03:00:00-04:00", "{v}");
    assert!(v["fires"][0]["notes"][0].as_str().unwrap_or_default().starts_with("daylight-saving gap"), "{v}");
    assert_eq!(v["fires"][1]["local_time"], "2026-03-09T02:30:00-04:00", "{v}");

    let mut c = node.client().await;
    let cases: Vec<(pb::PreviewScheduleRequest, Code, &str)> = vec![
        (pb::PreviewScheduleRequest::default(), Code::InvalidArgument, "target: give job_id or job"),
        (
            pb::PreviewScheduleRequest {
                target: Some(pb::preview_schedule_request::Target::JobId("nope".into())),
                ..Default::default()
            },
            Code::NotFound,
            "nope",
        ),
        (
            pb::PreviewScheduleRequest {
                target: Some(pb::preview_schedule_request::Target::JobId("nope".into())),
                count: 1001,
                ..Default::default()
            },
            Code::InvalidArgument,
            "count: 1001 is more than 1000",
        ),
        (
            pb::PreviewScheduleRequest {
                target: Some(pb::preview_schedule_request::Target::Job(pb::Job {
                    schedule: Some(pb::job::Schedule::Every(prost_types::Duration { seconds: 0, nanos: 5_000_000 })),
                    ..Default::default()
                })),
                ..Default::default()
            },
            Code::InvalidArgument,
            "every: 5ms is not between 1s and 366 days",
        ),
    ];
    for (req, code, want) in cases {
        let e = c.preview_schedule(req.clone()).await.expect_err("refused");
        assert_eq!(e.code(), code, "{req:?}: {e:?}");
        assert!(e.message().contains(want), "{req:?}: {}", e.message());
    }
    let o = rota(&node, &["job", "next"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("give a job's id, or a schedule"), "{}", text(&o));
    let o = rota(&node, &["job", "next", "x", "--every", "1m"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Bad schedules are refused with the field named, through the API, the CLI and a jobs file, and
/// nothing is written: the job does not exist afterwards.
#[tokio::test]
async fn bad_schedules_are_refused_naming_the_field_and_write_nothing() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let mut c = node.client().await;
    let now = rota::clock::now_ms();
    let ts = |ms: i64| Some(rota::pb::timestamp(ms));
    let dur = |ms: i64| prost_types::Duration { seconds: ms / 1000, nanos: (ms % 1000) as i32 * 1_000_000 };
    let base = || pb::Job { id: "bad".into(), handler: "noop".into(), ..Default::default() };
    use pb::job::Schedule as S;
    let cases: Vec<(pb::Job, &str)> = vec![
        (base(), "cron: a job needs a schedule: cron, every, at or after_previous"),
        (pb::Job { schedule: Some(S::AfterPrevious(dur(0))), ..base() }, "after_previous: must be longer than 0"),
        (
            pb::Job { schedule: Some(S::AfterPrevious(dur(500))), ..base() },
            "after_previous: 500ms is not between 1s and 366 days",
        ),
        (
            pb::Job { schedule: Some(S::AfterPrevious(dur(5000))), spread: Some(dur(60_000)), ..base() },
            "spread: not with after_previous",
        ),
        (
            pb::Job { schedule: Some(S::AfterPrevious(dur(5000))), shards: 3, ..base() },
            "after_previous: not with shards",
        ),
        (pb::Job { schedule: Some(S::AfterPrevious(dur(5000))), anchor: ts(now), ..base() }, "anchor: only with every"),
        (pb::Job { schedule: Some(S::Every(dur(0))), ..base() }, "every: must be longer than 0"),
        (pb::Job { schedule: Some(S::Every(dur(999))), ..base() }, "every: 999ms is not between 1s and 366 days"),
        (
            pb::Job { schedule: Some(S::Every(prost_types::Duration { seconds: -5, nanos: 0 })), ..base() },
            "every: must be a non-negative duration",
        ),
        (pb::Job { schedule: Some(S::At(pb::At { times: vec![] })), ..base() }, "at: needs at least one instant"),
        (
            pb::Job { schedule: Some(S::At(pb::At { times: vec![rota::pb::timestamp(now - 60_000)] })), ..base() },
            "at: ",
        ),
        (
            pb::Job {
                schedule: Some(S::At(pb::At {
                    times: vec![prost_types::Timestamp { seconds: now / 1000 + 60, nanos: -1 }],
                })),
                ..base()
            },
            "at: has nanos outside 0-999999999",
        ),
        (pb::Job { schedule: Some(S::After(dur(500))), ..base() }, "after: must be 1s or more"),
        (
            pb::Job { schedule: Some(S::After(prost_types::Duration { seconds: 9_000_000_000, nanos: 0 })), ..base() },
            "after: is too long: it ends past 2199",
        ),
        // 2^63 ms: no overflow anywhere, a plain refusal.
        (
            pb::Job {
                schedule: Some(S::Every(prost_types::Duration { seconds: 9_223_372_036_854_775, nanos: 808_000_000 })),
                ..base()
            },
            "every: 9223372036854775808ms is not between 1s and 366 days",
        ),
        (
            pb::Job {
                schedule: Some(S::Every(dur(60_000))),
                misfire: pb::MisfirePolicy::FireAll as i32,
                concurrency: pb::ConcurrencyPolicy::Forbid as i32,
                ..base()
            },
            "misfire: fire_all runs the missed fires together",
        ),
        (
            pb::Job {
                schedule: Some(S::Every(dur(60_000))),
                misfire: pb::MisfirePolicy::FireAll as i32,
                concurrency: pb::ConcurrencyPolicy::Buffer as i32,
                buffer_limit: 3,
                catch_up_limit: 5,
                ..base()
            },
            "catch_up_limit: 5 is more than the first fire and the 3 its buffer holds",
        ),
        (
            pb::Job { schedule: Some(S::Every(dur(60_000))), catch_up_limit: 5, ..base() },
            "catch_up_limit: only with misfire fire_all",
        ),
        (
            pb::Job { schedule: Some(S::Every(dur(60_000))), pause_after_failures: 1001, ..base() },
            "pause_after_failures: 1001 is more than 1000",
        ),
        (
            pb::Job { schedule: Some(S::Every(dur(60_000))), pause_after_failures: 3, shards: 3, ..base() },
            "pause_after_failures: not with shards",
        ),
        (
            pb::Job {
                schedule: Some(S::Every(dur(60_000))),
                misfire: pb::MisfirePolicy::FireAll as i32,
                catch_up_window: Some(dur(500)),
                ..base()
            },
            "catch_up_window: 500ms is not between 1s and 7 days",
        ),
        (pb::Job { schedule: Some(S::Cron("@daily".into())), anchor: ts(now), ..base() }, "anchor: only with every"),
        (
            pb::Job {
                schedule: Some(S::Every(dur(60_000))),
                start_time: ts(now + 10_000),
                end_time: ts(now),
                ..base()
            },
            "end_time: is before start_time",
        ),
        (pb::Job { schedule: Some(S::Every(dur(60_000))), end_time: ts(now - 1000), ..base() }, "end_time: "),
        (
            pb::Job { schedule: Some(S::Cron("@daily".into())), spread: Some(dur(90_000_000)), ..base() },
            "spread: 1d1h is not between 1s and 24h",
        ),
        (
            pb::Job { schedule: Some(S::Cron("@daily".into())), start_time: ts(-5), ..base() },
            "start_time: must lie between 1970 and 2199",
        ),
    ];
    for (job, want) in cases {
        let e = c.put_job(pb::PutJobRequest { job: Some(job.clone()) }).await.expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{job:?}: {e:?}");
        assert!(e.message().starts_with(want), "{job:?}: {}", e.message());
    }
    let gone = c.get_job(pb::GetJobRequest { id: "bad".into() }).await.expect_err("nothing written");
    assert_eq!(gone.code(), Code::NotFound);

    // The CLI: its own flags' errors before connecting, the node's after.
    let cli: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--handler", "noop"], 2, "give a schedule: --cron, --every, --at, --after or --after-previous"),
        (vec!["--after-previous", "0s", "--handler", "noop"], 2, "--after-previous: must be longer than 0"),
        (
            vec!["--after-previous", "5s", "--every", "1m", "--handler", "noop"],
            2,
            "give one schedule: --cron, --every, --at/--after, or --after-previous",
        ),
        (
            vec!["--after-previous", "5s", "--spread", "1m", "--handler", "noop"],
            1,
            "InvalidArgument: spread: not with after_previous",
        ),
        (vec!["--every", "0s", "--handler", "noop"], 2, "--every: must be longer than 0"),
        (vec!["--every", "5x", "--handler", "noop"], 2, "--every: '5x' has unknown unit 'x'"),
        (vec!["--at", "tomorrow", "--handler", "noop"], 2, "--at: 'tomorrow' is not a time"),
        (
            vec!["--at", "2026-03-08T02:30", "--tz", "America/New_York", "--handler", "noop"],
            2,
            "--at: 2026-03-08 02:30:00 does not exist in America/New_York (a daylight-saving gap)",
        ),
        (
            vec!["--cron", "@daily", "--every", "1m", "--handler", "noop"],
            2,
            "give one schedule: --cron, --every, --at/--after, or --after-previous",
        ),
        (
            vec!["--every", "1m", "--spread", "100ms", "--handler", "noop"],
            1,
            "InvalidArgument: spread: 100ms is not between 1s and 24h",
        ),
    ];
    for (args, code, want) in cli {
        let o = rota(&node, &[&["job", "put", "--id", "bad"], &args[..]].concat()).await;
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }

    // A jobs file: `after` is refused (it would move at every start), as is a local time that does
    // not exist; the line's job is named.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    for (body, want) in [
        ("after = \"10m\"", "after: not in a jobs file"),
        ("every = \"0s\"", "every: must be longer than 0"),
        ("after_previous = \"0s\"", "after_previous: must be longer than 0"),
        (
            "after_previous = \"5s\"\ncron = \"@daily\"",
            "after_previous: a job has one schedule: give cron or after_previous",
        ),
        ("at = []", "at: needs at least one time"),
        (
            "every = \"1m\"\nanchor = \"2026-03-08T02:30\"\ntime_zone = \"America/New_York\"",
            "anchor: 2026-03-08 02:30:00 does not exist",
        ),
        ("cron = \"@daily\"\nat = \"2030-01-01T00:00:00Z\"", "at: a job has one schedule: give cron or at, not both"),
    ] {
        std::fs::write(&file, format!("[[job]]\nid = \"bad\"\nhandler = \"noop\"\n{body}\n")).expect("write");
        let o = rota(&node, &["job", "put", "--file", file.to_str().expect("utf-8")]).await;
        assert_eq!(o.status.code(), Some(2), "{body}: {}", text(&o));
        assert!(text(&o).contains("job #1 ('bad')") && text(&o).contains(want), "{body}: {}", text(&o));
    }
    let gone = c.get_job(pb::GetJobRequest { id: "bad".into() }).await.expect_err("nothing written");
    assert_eq!(gone.code(), Code::NotFound);

    // A good file of every kind reads back as written.
    std::fs::write(
        &file,
        "[[job]]\nid = \"e\"\nhandler = \"noop\"\nevery = \"70m\"\nanchor = \"2030-01-01T09:00\"\n\
         time_zone = \"Europe/Paris\"\nspread = \"5m\"\nend_time = \"2031-01-01\"\n\
         [[job]]\nid = \"a\"\nhandler = \"noop\"\nat = [\"2030-01-01T00:00:00Z\", \"2030-06-01T12:00:00Z\"]\n",
    )
    .expect("write");
    let o = rota(&node, &["job", "put", "--file", file.to_str().expect("utf-8")]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let e = c.get_job(pb::GetJobRequest { id: "e".into() }).await.expect("e").into_inner().job.expect("job");
    assert_eq!(e.schedule, Some(S::Every(dur(70 * 60_000))));
    assert_eq!(e.anchor, ts(1_893_484_800_000), "09:00 in Paris is 08:00Z");
    assert_eq!(e.spread, Some(dur(300_000)));
    assert_eq!(e.end_time, ts(1_924_988_400_000), "midnight in Paris");
    assert_eq!(common::ms(&e.next_fire_time), 1_893_484_800_000 + rota::job::schedule::spread_offset_ms("e", 300_000));
    let a = c.get_job(pb::GetJobRequest { id: "a".into() }).await.expect("a").into_inner().job.expect("job");
    assert_eq!(
        a.schedule,
        Some(S::At(pb::At {
            times: vec![rota::pb::timestamp(1_893_456_000_000), rota::pb::timestamp(1_906_545_600_000)]
        }))
    );
}

/// Misfire `fire_all` after a 30 s outage (the only node SIGSTOPped, with a 2 s misfire threshold):
/// each instant the outage missed runs once, oldest first, as its own fire, and the grid goes on;
/// a job with a catch-up limit of 3 runs the 3 oldest and records the rest as one misfire.
#[tokio::test]
async fn fire_all_runs_each_fire_a_30_s_outage_missed_once_up_to_its_limit() {
    let redis = RedisServer::start();
    let node = TestNode::start(
        &Backend::Redis(redis.url()),
        "n1",
        &[&SHELL[..], &["--misfire-threshold-ms", "2000"]].concat(),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (all_log, capped_log) = (dir.path().join("all"), dir.path().join("capped"));
    let (all, capped) = (logging(&all_log, "true"), logging(&capped_log, "true"));
    let common = ["--every", "2s", "--handler", "shell", "--misfire", "fire_all"];
    put(&node, &[&["--id", "all", "--args", &all][..], &common].concat()).await;
    put(&node, &[&["--id", "capped", "--args", &capped, "--catch-up-limit", "3"][..], &common].concat()).await;
    eventually(WAIT, "both jobs ran twice", || async {
        (runs(&all_log, "end").len() >= 2 && runs(&capped_log, "end").len() >= 2).then_some(())
    })
    .await;
    node.pause();
    let stopped = rota::clock::now_ms();
    tokio::time::sleep(Duration::from_secs(30)).await;
    node.resume();
    let resumed = rota::clock::now_ms();
    eventually(WAIT, "the grid goes on after the catch-up", || async {
        (runs(&all_log, "end").keys().filter(|t| **t > resumed + 2_000).count() >= 2).then_some(())
    })
    .await;
    let o = rota(&node, &["job", "pause", "all"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = rota(&node, &["job", "pause", "capped"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // `all`: every instant from the first to the last started once, those of the outage too.
    let started = runs(&all_log, "start");
    let (first, last) = (*started.keys().next().expect("runs"), *started.keys().next_back().expect("runs"));
    let missed: Vec<i64> = (first..=last).step_by(2000).filter(|t| *t > stopped && *t < resumed - 2_000).collect();
    assert!(missed.len() >= 13, "the outage missed {} instants", missed.len());
    for t in (first..=last).step_by(2000) {
        assert_eq!(started.get(&t).map(Vec::len), Some(1), "instant {t} started once: {started:?}");
    }
    let execs = executions(&mut node.client().await, "all").await;
    assert!(execs.iter().all(|e| state(e) == pb::ExecutionState::Succeeded), "{execs:#?}");
    // `capped`: the outage's three oldest missed instants ran, the rest are one misfire record.
    let execs = executions(&mut node.client().await, "capped").await;
    let misfired: Vec<&pb::Execution> = execs.iter().filter(|e| state(e) == pb::ExecutionState::Misfired).collect();
    assert_eq!(misfired.len(), 1, "{execs:#?}");
    assert!(misfired[0].error.contains("past the catch-up limit"), "{}", misfired[0].error);
    let summary_at = common::ms(&misfired[0].scheduled_time);
    let ran = runs(&capped_log, "start");
    let caught_up: Vec<i64> = ran.keys().copied().filter(|t| *t > stopped && *t < summary_at).collect();
    assert_eq!(caught_up.len(), 3, "three caught up before {summary_at}: {ran:?}");
    assert!(ran.keys().all(|t| !(summary_at..resumed - 2_000).contains(t)), "none of the summary's ran: {ran:?}");
    assert!(ran.values().all(|n| n.len() == 1), "{ran:?}");
}

/// `max_fires = 3` on `every 1s`: three fires, then the job is completed (GetJob's `fire_count`
/// 3, no next fire; the preview had named three, the last saying why). Re-putting it keeps the
/// count and the completion; raising max_fires to 5 makes two more.
#[tokio::test]
async fn max_fires_stops_a_job_after_its_fires_and_a_re_put_keeps_the_count() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &SHELL).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let args = logging(&log, "true");
    let put_args = ["--id", "thrice", "--every", "1s", "--handler", "shell", "--args", &args];
    put(&node, &[&put_args[..], &["--max-fires", "3"]].concat()).await;
    let p = preview(&node, pb::preview_schedule_request::Target::JobId("thrice".into()), 10).await;
    assert_eq!(p.fires.len(), 3, "{p:?}");
    assert_eq!(p.fires[2].notes, ["last fire: the job's max_fires (3) is then made"]);
    let get = || async {
        node.client().await.get_job(pb::GetJobRequest { id: "thrice".into() }).await.ok()?.into_inner().job
    };
    let job = eventually(WAIT, "the job is completed", || async { get().await.filter(|j| j.completed) }).await;
    assert_eq!((job.fire_count, job.next_fire_time), (3, None));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs(&log, "end").len(), 3, "{:?}", runs(&log, "end"));
    put(&node, &[&put_args[..], &["--max-fires", "3"]].concat()).await;
    let job = get().await.expect("job");
    assert!(job.completed && job.fire_count == 3 && job.next_fire_time.is_none(), "{job:?}");
    let o = rota(&node, &["job", "resume", "thrice"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(get().await.expect("job").completed, "a resume does not bring it back");
    put(&node, &[&put_args[..], &["--max-fires", "5"]].concat()).await;
    let job = eventually(WAIT, "two more fires, then completed", || async {
        get().await.filter(|j| j.completed && j.fire_count == 5)
    })
    .await;
    assert!(job.next_fire_time.is_none());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ran = runs(&log, "end");
    assert_eq!(ran.len(), 5, "{ran:?}");
    assert!(ran.values().all(|n| n.len() == 1), "{ran:?}");
}

/// Pause with a note and an `until`: `job get` and `job list` say why, by whom, since and until
/// when; the master resumes the job by itself after `until` (the note goes), and it fires again.
/// A pause whose `until` is past, or whose note is too long, is refused naming the field and
/// changes nothing.
#[tokio::test]
async fn a_pause_with_a_note_and_until_says_why_and_ends_by_itself() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &SHELL).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let args = logging(&log, "true");
    put(&node, &["--id", "freeze", "--every", "1s", "--handler", "shell", "--args", &args]).await;
    let mut c = node.client().await;
    let now = rota::clock::now_ms();
    let refusals: Vec<(pb::PauseJobRequest, &str)> = vec![
        (
            pb::PauseJobRequest {
                id: "freeze".into(),
                until: Some(rota::pb::timestamp(now - 1000)),
                ..Default::default()
            },
            "until: ",
        ),
        (
            pb::PauseJobRequest { id: "freeze".into(), note: "n".repeat(1025), ..Default::default() },
            "note: longer than 1024 bytes",
        ),
        (
            pb::PauseJobRequest { id: "freeze".into(), note: "\u{1b}[2Jpaused: false".into(), ..Default::default() },
            "note: has control characters",
        ),
        (
            pb::PauseJobRequest {
                id: "freeze".into(),
                until: Some(rota::pb::timestamp(10_000_000_000_000)),
                ..Default::default()
            },
            "until: must lie before 2200",
        ),
        (
            pb::PauseJobRequest {
                id: "freeze".into(),
                until: Some(prost_types::Timestamp { seconds: now / 1000 + 60, nanos: 1_000_000_000 }),
                ..Default::default()
            },
            "until: has nanos outside 0-999999999",
        ),
    ];
    for (req, want) in refusals {
        let e = c.pause_job(req.clone()).await.expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{req:?}: {e:?}");
        assert!(e.message().starts_with(want), "{}", e.message());
    }
    let job = c.get_job(pb::GetJobRequest { id: "freeze".into() }).await.expect("get").into_inner().job.expect("job");
    assert_eq!(job.paused, Some(false), "a refused pause changes nothing");
    let o = rota(&node, &["job", "pause", "freeze", "--note", "deploy freeze", "--until", "4s"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let paused_at = rota::clock::now_ms();
    let o = rota(&node, &["job", "get", "freeze", "--json"]).await;
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        (v["paused"].as_bool(), v["pause_note"].as_str(), v["paused_by"].as_str()),
        (Some(true), Some("deploy freeze"), Some("anonymous"))
    );
    assert!(v["paused_until"].is_string() && v["pause_time"].is_string(), "{v}");
    let list = rota(&node, &["job", "list"]).await;
    let row = text(&list).lines().find(|l| l.starts_with("freeze")).map(str::to_string).unwrap_or_default();
    assert!(row.contains("yes, until ") && row.contains("by anonymous: deploy freeze"), "{}", text(&list));
    // The preview of the paused job starts after its pause, and says so.
    let got = c.get_job(pb::GetJobRequest { id: "freeze".into() }).await.expect("get").into_inner();
    let until = common::ms(&got.job.expect("job").paused_until);
    let p = preview(&node, pb::preview_schedule_request::Target::JobId("freeze".into()), 2).await;
    assert!(times(&p)[0] > until, "{p:?}");
    assert!(p.fires[0].notes[0].starts_with("the job is paused until "), "{p:?}");
    let job = eventually(WAIT, "the job resumed by itself", || async {
        let j = node.client().await.get_job(pb::GetJobRequest { id: "freeze".into() }).await.ok()?.into_inner().job?;
        (j.paused == Some(false)).then_some(j)
    })
    .await;
    let resumed_at = rota::clock::now_ms();
    assert!(resumed_at >= paused_at + 3_000, "resumed {} ms after the pause", resumed_at - paused_at);
    assert!(job.pause_note.is_empty() && job.paused_until.is_none(), "{job:?}");
    eventually(WAIT, "it fires again", || async { runs(&log, "end").keys().any(|t| *t > resumed_at).then_some(()) })
        .await;
    let ran: Vec<i64> = runs(&log, "start").into_keys().collect();
    assert!(!ran.iter().any(|t| *t > paused_at + 500 && *t < paused_at + 3_500), "no fire while paused: {ran:?}");
}

/// `pause_after_failures = 3` on a job whose fires fail: after the third failed fire in a row it
/// is paused, by `rota`, with a note saying why and a `job_paused` alert; no fourth fire runs. A
/// resume counts afresh: three more failures, paused again.
#[tokio::test]
async fn pause_after_failures_pauses_a_job_whose_fires_fail_in_a_row() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &SHELL).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let args = logging(&log, "exit 3");
    put(
        &node,
        &["--id", "flaky", "--every", "2s", "--handler", "shell", "--args", &args, "--pause-after-failures", "3"],
    )
    .await;
    let get =
        || async { node.client().await.get_job(pb::GetJobRequest { id: "flaky".into() }).await.ok()?.into_inner().job };
    let job =
        eventually(WAIT, "paused after three failures", || async { get().await.filter(|j| j.paused == Some(true)) })
            .await;
    assert_eq!(job.paused_by, "rota");
    assert!(job.pause_note.starts_with("paused after 3 scheduled fires failed in a row"), "{}", job.pause_note);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failed = |execs: &[pb::Execution]| execs.iter().filter(|e| state(e) == pb::ExecutionState::Failed).count();
    let execs = executions(&mut node.client().await, "flaky").await;
    assert_eq!((failed(&execs), execs.len()), (3, 3), "{execs:#?}");
    assert!(node.log().contains("job_paused"), "the alert is logged");
    let o = rota(&node, &["job", "resume", "flaky"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    eventually(WAIT, "paused again after three more", || async {
        let execs = executions(&mut node.client().await, "flaky").await;
        (get().await?.paused == Some(true) && failed(&execs) == 6).then_some(())
    })
    .await;
}

/// A jobs file that still lists a one-shot whose instant has passed (it fired, and the file was
/// then edited, or the job deleted): the node starts, stores that job completed with a WARN, and
/// fires the file's other jobs. (Through the API the same job is refused naming `at`.)
#[tokio::test]
async fn a_jobs_file_with_a_past_one_shot_starts_and_stores_it_completed() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[[job]]\nid = \"launched\"\nhandler = \"noop\"\nat = \"2026-01-01T00:00:00Z\"\n\
         [[job]]\nid = \"live\"\nhandler = \"noop\"\nevery = \"1s\"\n",
    )
    .expect("write");
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--jobs", file.to_str().expect("utf-8")]).await;
    eventually(WAIT, "the file's live job fires", || async {
        (!executions(&mut node.client().await, "live").await.is_empty()).then_some(())
    })
    .await;
    let job = node.client().await.get_job(pb::GetJobRequest { id: "launched".into() }).await.expect("get");
    let job = job.into_inner().job.expect("job");
    assert!(job.completed && job.next_fire_time.is_none(), "{job:?}");
    assert!(node.log().contains("the job has no instant left; stored completed"), "the WARN says why");
}
