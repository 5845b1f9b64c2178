//! Failover: SIGKILL the master of a 3-node cluster repeatedly and measure (a) the time until
//! another node holds the lease and (b) the time until the new master's first fire starts, with
//! 10 jobs firing every second throughout; then check every (job, second) ran exactly once.
//! Prints one JSON object and a table.
//!
//! Run: `cargo bench --bench failover` (env: ROTA_BENCH_KILLS, default 10; ROTA_BENCH_LEASE_TTL_MS
//! and ROTA_BENCH_LEASE_RENEW_MS, default the node defaults).
#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{executions, ms, Backend, RedisServer, TestNode};
use rota::pb;
use serde_json::json;
use support::{cores, env_num, median, redis_rtt_us};

async fn status(n: &TestNode) -> Option<pb::GetClusterStatusResponse> {
    let mut c = n.client().await;
    c.get_cluster_status(pb::GetClusterStatusRequest {}).await.ok().map(|r| r.into_inner())
}

#[tokio::main]
async fn main() {
    let kills = env_num("ROTA_BENCH_KILLS", 10);
    let defaults = rota::config::Config::default();
    let ttl = env_num("ROTA_BENCH_LEASE_TTL_MS", defaults.lease_ttl_ms).to_string();
    let renew = env_num("ROTA_BENCH_LEASE_RENEW_MS", defaults.lease_renew_ms).to_string();
    let flags = [
        "--lease-ttl-ms",
        ttl.as_str(),
        "--lease-renew-ms",
        renew.as_str(),
        "--load-threshold",
        "0.3",
        "--workers",
        "8",
    ];
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(TestNode::start(&b, id, &flags).await);
    }
    let jobs: Vec<String> = (0..10).map(|i| format!("fo-{i}")).collect();
    {
        let mut c = nodes[0].client().await;
        for id in &jobs {
            c.put_job(pb::PutJobRequest { job: Some(common::job(id, "* * * * * *", "noop", json!(null))) })
                .await
                .expect("put");
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut to_master, mut to_fire) = (Vec::new(), Vec::new());
    for round in 0..kills {
        let (old, old_epoch) = loop {
            if let Some(s) = status(&nodes[0]).await {
                if !s.master_id.is_empty() {
                    break (s.master_id, s.epoch);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let i = nodes.iter().position(|n| n.node_id == old).expect("master is one of ours");
        let killed_at = Instant::now();
        let killed_ms = rota::store::now_ms();
        nodes[i].kill();
        let survivor = nodes.iter().find(|n| n.node_id != old).expect("survivor");
        let new_epoch = loop {
            if let Some(s) = status(survivor).await {
                if !s.master_id.is_empty() && s.epoch > old_epoch {
                    break s.epoch;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        to_master.push(killed_at.elapsed().as_millis() as i64);
        let mut c = survivor.client().await;
        let first = loop {
            let r = c
                .list_executions(pb::ListExecutionsRequest { page_size: 100, ..Default::default() })
                .await
                .expect("list")
                .into_inner();
            let starts: Vec<i64> = r
                .executions
                .iter()
                .filter(|e| e.epoch == new_epoch && e.start_time.is_some())
                .map(|e| ms(&e.start_time))
                .collect();
            if let Some(t) = starts.iter().min() {
                break *t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        to_fire.push(first - killed_ms);
        eprintln!(
            "kill {}: new master after {} ms, first fire after {} ms",
            round + 1,
            to_master.last().unwrap_or(&0),
            first - killed_ms
        );
        // Bring the node back (a new incarnation) before the next round.
        nodes[i] = TestNode::start(&b, &old, &flags).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Stop firing and check the whole run.
    let mut c = nodes[0].client().await;
    for id in &jobs {
        c.pause_job(pb::PauseJobRequest { id: id.clone(), ..Default::default() }).await.expect("pause");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut fires, mut dups, mut gaps, mut lost) = (0usize, 0usize, 0usize, 0usize);
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    for id in &jobs {
        let mut by_fire: BTreeMap<i64, usize> = BTreeMap::new();
        for e in executions(&mut c, id).await {
            if e.state == pb::ExecutionState::Superseded as i32 {
                continue;
            }
            *by_fire.entry(ms(&e.scheduled_time)).or_default() += 1;
            if e.state == pb::ExecutionState::Lost as i32 {
                lost += 1;
            }
            *by_node.entry(e.node_id.clone()).or_default() += 1;
        }
        fires += by_fire.len();
        dups += by_fire.values().filter(|n| **n > 1).count();
        if let (Some(a), Some(z)) = (by_fire.keys().next(), by_fire.keys().last()) {
            gaps += ((z - a) / 1000 + 1) as usize - by_fire.len();
        }
    }
    let (m_med, m_max) = (median(&mut to_master.clone()), to_master.iter().max().copied().unwrap_or(0));
    let (f_med, f_max) = (median(&mut to_fire.clone()), to_fire.iter().max().copied().unwrap_or(0));
    let out = json!({
        "scenario": "failover",
        "cores": cores(),
        "redis_rtt_us": redis_rtt_us(&redis.url(), 2000),
        "kills": kills,
        "lease_ttl_ms": ttl, "lease_renew_ms": renew,
        "new_master_ms": {"median": m_med, "max": m_max, "all": to_master},
        "first_fire_ms": {"median": f_med, "max": f_max, "all": to_fire},
        "fires": fires, "duplicated": dups, "missing": gaps, "lost_with_a_node": lost,
        "runs_by_node": by_node,
    });
    println!("{out}");
    println!("\nkills  new master median/max ms  first fire median/max ms  fires  duplicated  missing  lost");
    println!(
        "{kills:>5}  {m_med:>10}/{m_max:<14}  {f_med:>10}/{f_max:<13}  {fires:>5}  {dups:>10}  {gaps:>7}  {lost:>4}"
    );
}
