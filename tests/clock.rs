//! A node whose wall clock is wrong still fires on time. Each node runs as a real `rota server`
//! process with its wall clock shifted by libfaketime (Debian package `faketime`; the monotonic
//! clock is left alone, as an NTP step or a bad RTC would), on a real `redis-server`.
//!
//! The collector is independent of every node's clock: a fire's delay is its execution record's
//! `start_time` minus its scheduled instant, and `start_time` is stamped by Redis itself (`TIME`,
//! inside the start script), which runs, like this test process, on the host's true clock.
//! Tolerances are loose (this machine is noisy) but far below the 3 s skew: before the cluster
//! clock, a node 3 s ahead fired every fire about 3 s early.
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, executions, job, ms, Backend, RedisServer, TestNode};
use rota::pb;
use serde_json::json;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// Largest |delay| accepted for any fire, against a skew of 3 s.
const TOLERANCE_MS: i64 = 1_000;
/// Largest |median delay| accepted on each node (the default `max_clock_offset_ms`): one slow
/// moment on this machine can make a fire late, but not half of them.
const MEDIAN_TOLERANCE_MS: i64 = 250;
const WAIT: Duration = Duration::from_secs(20);

/// The environment that shifts a process's wall clock by `offset` ("+3s", "-3s"), leaving its
/// monotonic clock (what tokio's timers use) alone.
fn skewed(offset: &'static str) -> Vec<(&'static str, &'static str)> {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: apt-get install faketime (./test.sh does)"
    );
    vec![("LD_PRELOAD", LIBFAKETIME), ("FAKETIME", offset), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")]
}

fn true_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn master_of(n: &TestNode) -> Option<String> {
    let mut c = n.client().await;
    let s = c.get_cluster_status(pb::GetClusterStatusRequest {}).await.ok()?.into_inner();
    (!s.master_id.is_empty()).then_some(s.master_id)
}

/// Each node's measured offset (Redis's clock minus the node's), from ListNodes.
async fn offsets(n: &TestNode) -> BTreeMap<String, Option<i64>> {
    let mut c = n.client().await;
    let r = c.list_nodes(pb::ListNodesRequest {}).await.expect("list nodes").into_inner();
    r.nodes.into_iter().map(|n| (n.node_id, n.clock_offset_ms)).collect()
}

/// Asserts that `node` measured about `want_ms` (within 500 ms) and says so in ListNodes.
async fn assert_offset(via: &TestNode, node: &str, want_ms: i64) {
    let got = offsets(via).await;
    let o = got.get(node).copied().flatten();
    assert!(o.is_some_and(|o| (o - want_ms).abs() < 500), "{node}: offset {o:?}, expected about {want_ms} ms: {got:?}");
}

async fn put_jobs(node: &TestNode, n: usize) -> Vec<String> {
    let mut c = node.client().await;
    let ids: Vec<String> = (0..n).map(|i| format!("tick-{i}")).collect();
    for id in &ids {
        c.put_job(pb::PutJobRequest { job: Some(job(id, "* * * * * *", "noop", json!(null))) }).await.expect("put");
    }
    ids
}

/// What the records say about the fires scheduled in a window of true time.
#[derive(Debug, Default)]
struct Fires {
    /// (node that ran it, start - scheduled in ms), for every fire that started.
    delays: Vec<(String, i64)>,
    /// Instants in the window with no started fire (each job fires every second).
    missing: usize,
}

impl Fires {
    fn on(&self, node: &str) -> Vec<i64> {
        self.delays.iter().filter(|(n, _)| n == node).map(|(_, d)| *d).collect()
    }

    /// min / p50 / max of the delays on each node, for the log.
    fn summary(&self) -> String {
        let mut by: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (n, d) in &self.delays {
            by.entry(n).or_default().push(*d);
        }
        let mut out = format!("{} fires, {} missing;", self.delays.len(), self.missing);
        for (n, mut d) in by {
            d.sort_unstable();
            out += &format!(" {n}: n={} min={} p50={} max={} ms;", d.len(), d[0], d[d.len() / 2], d[d.len() - 1]);
        }
        out
    }

    fn assert_on_time(&self, case: &str) {
        eprintln!("{case}: {}", self.summary());
        assert!(self.delays.len() >= 10, "{case}: too few fires to judge: {}", self.summary());
        assert_eq!(self.missing, 0, "{case}: fires not started seconds after their instant: {}", self.summary());
        let off: Vec<&(String, i64)> = self.delays.iter().filter(|(_, d)| d.abs() >= TOLERANCE_MS).collect();
        assert!(
            off.is_empty(),
            "{case}: fires {TOLERANCE_MS} ms or more off their instant: {off:?}; {}",
            self.summary()
        );
        for node in self.delays.iter().map(|(n, _)| n.as_str()).collect::<std::collections::BTreeSet<_>>() {
            let mut d = self.on(node);
            d.sort_unstable();
            let median = d[d.len() / 2];
            assert!(
                median.abs() < MEDIAN_TOLERANCE_MS,
                "{case}: the fires on {node} are {median} ms off their instant (median); {}",
                self.summary()
            );
        }
    }
}

/// Lets the cluster fire for a while, then reads the fires scheduled in [from, to) (true time,
/// ms), waiting long enough after `to` that a fire 3 s late has started and shows as late rather
/// than missing.
async fn fires_between(node: &TestNode, jobs: &[String], from: i64, to: i64) -> Fires {
    let settle = to + 4_500 - true_now_ms();
    if settle > 0 {
        tokio::time::sleep(Duration::from_millis(settle as u64)).await;
    }
    let mut c = node.client().await;
    let mut f = Fires::default();
    for j in jobs {
        let mut started = std::collections::BTreeSet::new();
        for e in executions(&mut c, j).await {
            let sched = ms(&e.scheduled_time);
            if e.manual || sched < from || sched >= to || e.start_time.is_none() {
                continue;
            }
            started.insert(sched);
            f.delays.push((e.node_id.clone(), ms(&e.start_time) - sched));
        }
        let first = (from + 999) / 1000 * 1000;
        let expected = (first..to).step_by(1000).count();
        f.missing += expected.saturating_sub(started.len());
    }
    f
}

/// `rota_clock_offset_seconds` as the node's /metrics shows it.
async fn offset_metric(listen: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://{listen}/metrics")).await.ok()?.text().await.ok()?;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).ok()?;
    scrape.samples.iter().find(|s| s.metric == "rota_clock_offset_seconds").and_then(|s| match s.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    })
}

/// A one-node cluster whose only node's clock is off by `offset`.
async fn one_node(offset: &'static str) -> Fires {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let listen = format!("127.0.0.1:{}", common::free_port());
    let n = TestNode::start_env(&b, "n1", &["--metrics-listen", &listen], &skewed(offset)).await;
    eventually(WAIT, "n1 is master", || async { master_of(&n).await.filter(|m| m == "n1") }).await;
    // The offset is Redis's clock minus the node's (NTP's sign): negative when the node is ahead.
    let want = if offset.starts_with('+') { -3_000 } else { 3_000 };
    assert_offset(&n, "n1", want).await;
    let metric = offset_metric(&listen).await;
    assert!(
        metric.is_some_and(|m| (m * 1000.0 - want as f64).abs() < 500.0),
        "rota_clock_offset_seconds is {metric:?}, expected about {want} ms"
    );
    let log = n.log();
    assert!(log.contains("clock_skew"), "no clock_skew alert in the log:\n{log}");
    let jobs = put_jobs(&n, 5).await;
    let from = true_now_ms() + 1_500;
    fires_between(&n, &jobs, from, from + 4_000).await
}

#[tokio::test]
async fn a_lone_node_three_seconds_ahead_fires_on_time() {
    one_node("+3s").await.assert_on_time("one node, 3 s ahead");
}

#[tokio::test]
async fn a_lone_node_three_seconds_behind_fires_on_time() {
    one_node("-3s").await.assert_on_time("one node, 3 s behind");
}

/// Three nodes; the master's workers are few, so most fires go to the others (its load passes
/// the threshold as soon as two fires wait for their instant). Not one worker: the queue drain
/// holds a worker while it waits on the node's queue, and the master's own fire would wait for it.
#[tokio::test]
async fn a_skewed_master_fires_on_time_on_every_node() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start_env(&b, "n1", &["--workers", "2"], &skewed("+3s")).await;
    eventually(WAIT, "n1 is master", || async { master_of(&n1).await.filter(|m| m == "n1") }).await;
    let n2 = TestNode::start(&b, "n2", &[]).await;
    let n3 = TestNode::start(&b, "n3", &[]).await;
    eventually(WAIT, "every node has measured its clock", || async {
        offsets(&n1).await.values().all(Option::is_some).then_some(())
    })
    .await;
    assert_offset(&n3, "n1", -3_000).await;
    assert_offset(&n3, "n2", 0).await;
    let jobs = put_jobs(&n1, 6).await;
    let from = true_now_ms() + 2_000;
    let fires = fires_between(&n2, &jobs, from, from + 4_000).await;
    assert_eq!(master_of(&n3).await.as_deref(), Some("n1"), "the skewed node stayed master");
    assert!(!fires.on("n2").is_empty() || !fires.on("n3").is_empty(), "no fire was dispatched: {}", fires.summary());
    fires.assert_on_time("master 3 s ahead");
}

/// Three nodes; the master's clock is right, one other node is 3 s behind and one 3 s ahead.
#[tokio::test]
async fn skewed_workers_fire_on_time() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &["--workers", "2"]).await;
    eventually(WAIT, "n1 is master", || async { master_of(&n1).await.filter(|m| m == "n1") }).await;
    let n2 = TestNode::start_env(&b, "n2", &[], &skewed("-3s")).await;
    let n3 = TestNode::start_env(&b, "n3", &[], &skewed("+3s")).await;
    eventually(WAIT, "every node has measured its clock", || async {
        offsets(&n1).await.values().all(Option::is_some).then_some(())
    })
    .await;
    assert_offset(&n1, "n2", 3_000).await;
    assert_offset(&n1, "n3", -3_000).await;
    let jobs = put_jobs(&n1, 6).await;
    let from = true_now_ms() + 2_000;
    let fires = fires_between(&n1, &jobs, from, from + 4_000).await;
    assert_eq!(master_of(&n3).await.as_deref(), Some("n1"), "the master did not change");
    assert!(!fires.on(&n2.node_id).is_empty(), "n2 (behind) ran nothing: {}", fires.summary());
    assert!(!fires.on(&n3.node_id).is_empty(), "n3 (ahead) ran nothing: {}", fires.summary());
    fires.assert_on_time("workers 3 s behind and ahead");
}
