//! Fire precision: how late after its scheduled instant a handler starts, on one node, with the
//! in-memory store and with a real Redis. Prints one JSON object per store (plus a table), with the
//! machine's core count and a plain Redis round trip measured in the same run, so results read as
//! ratios. No thresholds here: this measures, it does not judge.
//!
//! Run: `cargo bench --bench fire_delay` (env ROTA_BENCH_JOBS, default 20; ROTA_BENCH_SECS, default 12).
#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{executions, ms, state, Backend, RedisServer, TestNode};
use rota::pb;
use serde_json::json;
use support::{env_num, percentile, redis_rtt_us};

async fn run(name: &str, backend: Backend, jobs: usize, secs: u64, rtt_us: f64) -> serde_json::Value {
    let node = TestNode::start(&backend, "bench", &["--workers", "64"]).await;
    let mut c = node.client().await;
    for i in 0..jobs {
        c.put_job(pb::PutJobRequest { job: Some(common::job(&format!("b{i}"), "* * * * * *", "noop", json!(null))) })
            .await
            .expect("put");
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (mut delays, mut fires, mut doubled, mut missed) = (Vec::new(), 0usize, 0usize, 0usize);
    for i in 0..jobs {
        let execs = executions(&mut c, &format!("b{i}")).await;
        let mut by_fire: BTreeMap<i64, usize> = BTreeMap::new();
        for e in &execs {
            *by_fire.entry(ms(&e.scheduled_time)).or_default() += 1;
            if state(e) == pb::ExecutionState::Succeeded {
                delays.push(ms(&e.start_time) - ms(&e.scheduled_time));
            }
        }
        fires += by_fire.len();
        doubled += by_fire.values().filter(|n| **n > 1).count();
        if let (Some(first), Some(last)) = (by_fire.keys().next(), by_fire.keys().last()) {
            missed += ((last - first) / 1000 + 1) as usize - by_fire.len();
        }
    }
    delays.sort();
    json!({
        "scenario": "fire_delay",
        "store": name,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "jobs": jobs,
        "seconds": secs,
        "fires": fires,
        "missed": missed,
        "doubled": doubled,
        "delay_ms": {
            "p50": percentile(&delays, 0.50),
            "p99": percentile(&delays, 0.99),
            "max": delays.last().copied().unwrap_or(0),
        },
        "redis_rtt_us": rtt_us,
        "p99_over_redis_rtt": percentile(&delays, 0.99) as f64 * 1000.0 / rtt_us,
    })
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; nothing else is parsed.
    let jobs = env_num("ROTA_BENCH_JOBS", 20) as usize;
    let secs = env_num("ROTA_BENCH_SECS", 12);
    let redis = RedisServer::start();
    let rtt = redis_rtt_us(&redis.url(), 2000);
    let mut results = Vec::new();
    results.push(run("memory", Backend::Memory, jobs, secs, rtt).await);
    results.push(run("redis", Backend::Redis(redis.url()), jobs, secs, rtt).await);
    for r in &results {
        println!("{r}");
    }
    println!(
        "\n{:<8} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>12}",
        "store", "fires", "missed", "doubled", "p50 ms", "p99 ms", "max ms", "redis rtt µs"
    );
    for r in &results {
        println!(
            "{:<8} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>12.1}",
            r["store"].as_str().unwrap_or(""),
            r["fires"],
            r["missed"],
            r["doubled"],
            r["delay_ms"]["p50"],
            r["delay_ms"]["p99"],
            r["delay_ms"]["max"],
            rtt
        );
    }
}
