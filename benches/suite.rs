//! The benchmark suite (issue 6): fire precision on a 3-node cluster, burst throughput, the cost of
//! one fire in Redis commands and gRPC calls, scale with 10^5 and 10^6 registered jobs, and a
//! node's footprint. Each scenario starts its own `redis-server` and `rota` processes (release
//! build) on loopback and prints one JSON object, with the core count and a plain Redis round trip
//! measured in the same run; a table follows. No thresholds: this measures, the notes compare.
//!
//! Run: `cargo bench --bench suite` (all of `cargo bench` adds fire_delay and failover).
//! BullMQ's no-op drain runs in the same suite (`bullmq`) and rota's burst is reported as a ratio to
//! it (`burst_vs_bullmq`).
//! Shards (issue 14, part 3): `burst_sharded` (one Redis, ROTA_BENCH_SHARDS shards) and
//! `burst_redis_cluster_sharded` (a local Redis Cluster of 3 primaries) report each primary's share
//! of the Redis time and a projection of the fire rate on N primaries from the per-fire Redis time
//! (a projection, stated as one: this machine has 2 cores for every process of the run).
//! External workers (issue 15): `workers` (one node, one Python and one Node.js worker process:
//! burst fires per second and steady delay against the built-in no-op, and BullMQ with one worker
//! process in the same run).
//! Steps (issue 14, part 1): `steps` drives the store directly and prints each step's Redis commands
//! and microseconds per fire (claim, accept, start, finish), split into the commands' own time and
//! the script call's (its arguments, Lua, its reply).
//! Floor (issue 14, parts 1 and 7): `floor` runs a prototype of the leanest fire the one-record model
//! allows (two steps: a claim into the master's own hands and a finish into the fire hash) in
//! rota's batch loop, and prints the same figures and the bytes a retained execution would take.
//! Knobs: ROTA_BENCH_ONLY=precision,precision_at_instant,precision_sharded,burst,bullmq,burst_redis_cluster,burst_sharded,burst_redis_cluster_sharded,workers,scale,steps,floor,footprint,history;
//! ROTA_BENCH_STEPS (2000);
//! ROTA_BENCH_WORKER_FIRES (5000), ROTA_BENCH_WORKER_SECS (15);
//! ROTA_BENCH_SHARDS (16);
//! ROTA_BENCH_PRECISION_JOBS (1000), ROTA_BENCH_PRECISION_WORKERS (32), ROTA_BENCH_PRECISION_SECS (60), ROTA_BENCH_BURST (100000), ROTA_BENCH_SCALE (100000,1000000),
//! ROTA_BENCH_HISTORY_JOBS (200), ROTA_BENCH_HISTORY_SECS (60; the soak: 900), ROTA_BENCH_HISTORY_KEEP (20),
//! ROTA_BENCH_HISTORY_POSTGRES (0; 1: the node archives to a PostgreSQL the bench starts).
#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Backend, RedisServer, TestNode};
use futures_util::StreamExt;
use rota::pb;
use rota::store::JobStore;
use serde_json::{json, Value};
use support::{cores, env_num, percentile, redis_rtt_us};

/// INFO commandstats: per command, (calls, microseconds); a script's line includes the commands it ran.
fn redis_commandstats(url: &str) -> BTreeMap<String, (u64, u64)> {
    let mut c = redis::Client::open(url).and_then(|c| c.get_connection()).expect("redis");
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut c).expect("info");
    let mut per = BTreeMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else { continue };
        let field =
            |f: &str| rest.split(',').find_map(|kv| kv.strip_prefix(f)).and_then(|v| v.parse().ok()).unwrap_or(0);
        per.insert(name.to_string(), (field("calls="), field("usec=")));
    }
    per
}

/// Total commands Redis has executed, and per command.
fn redis_calls(url: &str) -> (u64, BTreeMap<String, u64>) {
    let per: BTreeMap<String, u64> = redis_commandstats(url).into_iter().map(|(k, (calls, _))| (k, calls)).collect();
    (per.values().sum(), per)
}

/// Microseconds Redis spent per command.
fn redis_usec(url: &str) -> BTreeMap<String, u64> {
    redis_commandstats(url).into_iter().map(|(k, (_, usec))| (k, usec)).collect()
}

/// `redis_calls` summed over several servers (a Redis Cluster's primaries).
fn redis_calls_on(urls: &[String]) -> (u64, BTreeMap<String, u64>) {
    let mut per: BTreeMap<String, u64> = BTreeMap::new();
    for u in urls {
        for (k, v) in redis_calls(u).1 {
            *per.entry(k).or_default() += v;
        }
    }
    (per.values().sum(), per)
}

/// `redis_usec` summed over several servers.
fn redis_usec_on(urls: &[String]) -> BTreeMap<String, u64> {
    let mut per: BTreeMap<String, u64> = BTreeMap::new();
    for u in urls {
        for (k, v) in redis_usec(u) {
            *per.entry(k).or_default() += v;
        }
    }
    per
}

/// Redis's CPU time so far (`INFO cpu`: user + system of the main process), in µs: what a fire
/// really costs a primary, its network I/O included (commandstats counts command time only, and
/// counts a script's commands inside the script's time again).
fn redis_cpu_us(url: &str) -> u64 {
    let mut c = redis::Client::open(url).and_then(|c| c.get_connection()).expect("redis");
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut c).expect("info");
    let field = |f: &str| {
        info.lines().find_map(|l| l.strip_prefix(f)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    ((field("used_cpu_user:") + field("used_cpu_sys:")) * 1e6) as u64
}

fn redis_used_memory(url: &str) -> u64 {
    let mut c = redis::Client::open(url).and_then(|c| c.get_connection()).expect("redis");
    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).expect("info");
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// (user + system) CPU seconds a process has used.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Sum of a metric's samples (all label sets) over the nodes' /metrics.
async fn metric_sum(ports: &[u16], name: &str) -> f64 {
    let mut sum = 0.0;
    for p in ports {
        let Ok(r) = reqwest::get(format!("http://127.0.0.1:{p}/metrics")).await else { continue };
        let Ok(body) = r.text().await else { continue };
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let (key, v) = line.rsplit_once(' ').unwrap_or(("", ""));
            let metric = key.split('{').next().unwrap_or("");
            if metric == name {
                sum += v.parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    sum
}

/// Fires delivered by a direct SubmitTasks call, over the nodes.
async fn direct_submits(ports: &[u16]) -> f64 {
    let mut n = 0.0;
    for p in ports {
        let Ok(r) = reqwest::get(format!("http://127.0.0.1:{p}/metrics")).await else { continue };
        let body = r.text().await.unwrap_or_default();
        for line in body.lines().filter(|l| l.starts_with("rota_dispatch_total{path=\"direct\"}")) {
            n += line.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    n
}

/// A cluster of `n` nodes on one Redis, each with a metrics port.
async fn cluster(redis: &RedisServer, n: usize, extra: &[&str]) -> (Vec<TestNode>, Vec<u16>) {
    cluster_on(&redis.url(), n, extra).await
}

/// As `cluster`, on the store at `url` (one Redis, or `redis+cluster://`).
async fn cluster_on(url: &str, n: usize, extra: &[&str]) -> (Vec<TestNode>, Vec<u16>) {
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    for i in 0..n {
        let port = common::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--metrics-listen", listen.as_str()];
        args.extend_from_slice(extra);
        let env = [("RUST_LOG", "rota=warn")];
        let node = TestNode::spawn_env(&Backend::Redis(url.to_string()), &format!("n{}", i + 1), &args, &env);
        node.wait_serving().await;
        nodes.push(node);
        ports.push(port);
    }
    (nodes, ports)
}

/// Puts jobs straight into the store (the same script PutJob uses), 64 at a time: loading 10^6
/// jobs through gRPC one by one would measure the loader, not rota.
async fn load_jobs(url: &str, specs: impl Iterator<Item = rota::job::JobSpec>) -> usize {
    load_jobs_sharded(url, 1, specs).await
}

/// As `load_jobs`, into a cluster of `shards` shards (made here: the nodes started later agree).
async fn load_jobs_sharded(url: &str, shards: u16, specs: impl Iterator<Item = rota::job::JobSpec>) -> usize {
    let base = rota::store::redis::RedisStore::connect(url, "rota", "default", 86_400_000).await.expect("store");
    assert_eq!(base.cluster_shards(shards).await.expect("meta"), shards);
    let stores: Vec<rota::store::redis::RedisStore> = (1..shards).map(|k| base.shard(k)).collect();
    let stores: Vec<&rota::store::redis::RedisStore> = std::iter::once(&base).chain(stores.iter()).collect();
    let now = rota::store::now_ms();
    futures_util::stream::iter(specs)
        .map(|spec| {
            let store = stores[usize::from(rota::store::keys::shard_of(&spec.id, shards))];
            async move {
                let job = rota::job::Job::new(spec).expect("valid job");
                let next = job.next_after_ms(now);
                store.put_job(&job.spec, next, now).await.expect("put job");
            }
        })
        .buffer_unordered(64)
        .count()
        .await
}

/// Node flags of a scenario that lists its executions across jobs (`common::executions(c, "")`) to
/// count them: every one listed, not only a shard's newest 10,000 (`execution_recent`).
const LIST_ALL: [&str; 2] = ["--execution-recent", "10000000"];

fn spec(id: String, cron: &str, handler: &str, args: Value) -> rota::job::JobSpec {
    rota::job::JobSpec { id, cron: cron.into(), handler: handler.into(), args, ..Default::default() }
}

/// Scenario 1, fire precision on a 3-node cluster, and scenario 3, the cost of a fire in Redis
/// commands and gRPC calls, measured over the same steady run. `lead_ms`: the nodes' start lead
/// (`start_lead_ms`; `precision_at_instant` runs it at 0, every start at its instant, to compare).
async fn precision(scenario: &str, lead_ms: Option<u64>, shards: u16) -> Value {
    let jobs = env_num("ROTA_BENCH_PRECISION_JOBS", 1000) as usize;
    let secs = env_num("ROTA_BENCH_PRECISION_SECS", 60);
    let redis = RedisServer::start();
    let rtt = redis_rtt_us(&redis.url(), 2000);
    let workers = env_num("ROTA_BENCH_PRECISION_WORKERS", 32).to_string();
    let lead = lead_ms.unwrap_or(rota::store::START_LEAD_MS as u64).to_string();
    let shard_flag = shards.to_string();
    let (nodes, ports) = cluster(
        &redis,
        3,
        &["--workers", &workers, "--start-lead-ms", &lead, "--shards", &shard_flag, LIST_ALL[0], LIST_ALL[1]],
    )
    .await;
    // Background: heartbeats, lease renewals, load reports, queue polls with nothing to fire.
    let (idle0, _) = redis_calls(&redis.url());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle1, _) = redis_calls(&redis.url());
    let idle_per_s = (idle1 - idle0) as f64 / 5.0;
    load_jobs_sharded(
        &redis.url(),
        shards,
        (0..jobs).map(|i| spec(format!("p{i:05}"), "* * * * * *", "noop", Value::Null)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (c0, per0) = redis_calls(&redis.url());
    let fires0 = metric_sum(&ports, "rota_fires_total").await;
    let direct0 = direct_submits(&ports).await;
    let calls0 = metric_sum(&ports, "rota_submit_calls_total").await;
    let t0 = Instant::now();
    let from_ms = rota::store::now_ms();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let to_ms = rota::store::now_ms();
    let (c1, per1) = redis_calls(&redis.url());
    let fires1 = metric_sum(&ports, "rota_fires_total").await;
    let elapsed = t0.elapsed().as_secs_f64();
    let fires = fires1 - fires0;
    let direct = direct_submits(&ports).await - direct0;
    let calls = metric_sum(&ports, "rota_submit_calls_total").await - calls0;
    let per_cmd: BTreeMap<String, f64> = per1
        .iter()
        .map(|(k, v)| (k.clone(), (*v - per0.get(k).copied().unwrap_or(0)) as f64 / fires.max(1.0)))
        .filter(|(_, v)| *v >= 0.01)
        .collect();
    let redis_per_fire = ((c1 - c0) as f64 - idle_per_s * elapsed) / fires.max(1.0);
    // Delays and exactly-once from the records of the measured window.
    let mut c = nodes[0].client().await;
    let mut delays = Vec::new();
    let mut per_fire: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    for e in common::executions(&mut c, "").await {
        let sched = common::ms(&e.scheduled_time);
        if sched < from_ms + 1000 || sched >= to_ms - 2000 {
            continue;
        }
        *per_fire.entry((e.job_id.clone(), sched)).or_default() += 1;
        if common::state(&e) == pb::ExecutionState::Succeeded {
            delays.push(common::ms(&e.start_time) - sched);
            *by_node.entry(e.node_id.clone()).or_default() += 1;
        }
    }
    let first = (from_ms + 1000 + 999) / 1000 * 1000;
    let last = (to_ms - 2000 - 1) / 1000 * 1000;
    let expected = (((last - first) / 1000 + 1) as usize) * jobs;
    let doubled = per_fire.values().filter(|n| **n > 1).count();
    delays.sort_unstable();
    drop(nodes);
    json!({
        "scenario": scenario,
        "shards": shards,
        "cores": cores(),
        "nodes": 3,
        "jobs": jobs,
        "workers_per_node": workers,
        "start_lead_ms": lead,
        "seconds": secs,
        "fires_expected": expected,
        "fires_recorded": per_fire.len(),
        "missed": expected.saturating_sub(per_fire.len()),
        "doubled": doubled,
        "delay_ms": { "p50": percentile(&delays, 0.5), "p99": percentile(&delays, 0.99), "max": delays.last().copied().unwrap_or(0) },
        "by_node": by_node,
        "redis_rtt_us": rtt,
        "p99_over_redis_rtt": percentile(&delays, 0.99) as f64 * 1000.0 / rtt,
        "submission": {
            "redis_commands_per_fire": redis_per_fire,
            "redis_commands_per_fire_by_command": per_cmd,
            "redis_background_commands_per_s": idle_per_s,
            "grpc_submit_calls_per_fire": calls / fires.max(1.0),
            "fires_sent_to_peers_per_fire": direct / fires.max(1.0),
        },
    })
}

/// Scenario 2, burst: many jobs due in the same second, through 3 nodes with the master over its
/// load threshold (8 workers each, so it is at once): fires completed per second end to end.
async fn burst() -> Value {
    let redis = RedisServer::start();
    burst_on(&redis.url(), &[redis.url()], "burst", 1).await
}

/// The burst on one Redis with ROTA_BENCH_SHARDS shards: what shards cost where they cannot spread.
async fn burst_sharded() -> Value {
    let redis = RedisServer::start();
    burst_on(&redis.url(), &[redis.url()], "burst_sharded", env_num("ROTA_BENCH_SHARDS", 16) as u16).await
}

/// The burst on a real local Redis Cluster (3 primaries, 3 replicas): every key of rota's one shard
/// is in one slot, so one primary does the work; its commands are counted on every primary.
async fn burst_redis_cluster() -> Value {
    burst_on_redis_cluster("burst_redis_cluster", 1).await
}

/// The same with ROTA_BENCH_SHARDS shards: their hash tags spread over the primaries.
async fn burst_redis_cluster_sharded() -> Value {
    burst_on_redis_cluster("burst_redis_cluster_sharded", env_num("ROTA_BENCH_SHARDS", 16) as u16).await
}

async fn burst_on_redis_cluster(scenario: &str, shards: u16) -> Value {
    let rc = common::RedisCluster::start();
    let primaries: Vec<String> = rc
        .servers
        .iter()
        .map(|s| s.url())
        .filter(|u| {
            let mut c = redis::Client::open(u.as_str()).and_then(|c| c.get_connection()).expect("redis");
            let info: String = redis::cmd("INFO").arg("replication").query(&mut c).expect("info");
            info.contains("role:master")
        })
        .collect();
    burst_on(&rc.url(), &primaries, scenario, shards).await
}

/// Scenario 2 on the store at `url` with `shards` shards; Redis's commands and time are read on
/// `servers` (the primaries).
async fn burst_on(url: &str, servers: &[String], scenario: &str, shards: u16) -> Value {
    let n = env_num("ROTA_BENCH_BURST", 100_000) as usize;
    let rtt = redis_rtt_us(&servers[0], 2000);
    // All due at one instant 15 s from now (daily at that time of day, UTC): one burst in the run.
    let burst_at = (rota::store::now_ms() / 1000 + 15) * 1000;
    let t = rota::job::ms_to_datetime(burst_at);
    let cron = chrono::Timelike::second(&t).to_string()
        + &format!(" {} {} * * *", chrono::Timelike::minute(&t), chrono::Timelike::hour(&t));
    let loaded_at = Instant::now();
    load_jobs_sharded(url, shards, (0..n).map(|i| spec(format!("b{i:06}"), &cron, "noop", Value::Null))).await;
    let load_s = loaded_at.elapsed().as_secs_f64();
    let shard_flag = shards.to_string();
    let (nodes, ports) =
        cluster_on(url, 3, &["--workers", "8", "--shards", &shard_flag, LIST_ALL[0], LIST_ALL[1]]).await;
    let now = rota::store::now_ms();
    let ((calls0, per0), usec0) = (redis_calls_on(servers), redis_usec_on(servers));

    // Wait for the burst, then for every fire of it to be recorded.
    // Redis's CPU is read from just before the fire-ahead window, leaving out the idle seconds
    // before it (heartbeats, lease renewals: more of them with more shards).
    tokio::time::sleep(Duration::from_millis((burst_at - 500 - now).max(0) as u64)).await;
    let by_server0: Vec<u64> = servers.iter().map(|u| redis_cpu_us(u)).collect();
    tokio::time::sleep(Duration::from_millis((burst_at - rota::store::now_ms()).max(0) as u64)).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut done = 0.0;
    while Instant::now() < deadline {
        done = metric_sum(&ports, "rota_fires_total").await;
        if done >= n as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ((calls1, per1), usec1) = (redis_calls_on(servers), redis_usec_on(servers));
    let by_server1: Vec<u64> = servers.iter().map(|u| redis_cpu_us(u)).collect();
    // Each primary's CPU time per fire, and the busiest one's share.
    let by_server: Vec<f64> = by_server1.iter().zip(&by_server0).map(|(b, a)| (b - a) as f64 / n as f64).collect();
    let usec_all: f64 = by_server.iter().sum();
    let busiest = by_server.iter().copied().fold(0.0, f64::max);
    // A projection, not a measurement: a primary has one core, so N primaries sharing the shards
    // evenly would bound the rate at N / (Redis CPU time per fire), if the nodes kept up (here they
    // share the machine's 2 cores with Redis, so the measured rate is lower).
    let projected: serde_json::Map<String, Value> = [1u32, 3, 6, 12]
        .iter()
        .map(|p| (p.to_string(), json!(if usec_all > 0.0 { (f64::from(*p) * 1e6 / usec_all).round() } else { 0.0 })))
        .collect();
    // Which commands Redis ran per fire (a script call and each command it ran count apiece).
    let mut commands_per_fire: Vec<(String, f64)> = per1
        .iter()
        .map(|(k, v)| (k.clone(), (*v - per0.get(k).copied().unwrap_or(0)) as f64 / n as f64))
        .filter(|(_, v)| *v >= 0.01)
        .collect();
    commands_per_fire.sort_by(|a, b| b.1.total_cmp(&a.1));
    let commands_per_fire: serde_json::Map<String, Value> =
        commands_per_fire.into_iter().map(|(k, v)| (k, json!((v * 100.0).round() / 100.0))).collect();
    // Where Redis's time went, per fire (scripts include the commands they ran).
    let usec_per_fire: BTreeMap<String, f64> = usec1
        .iter()
        .map(|(k, v)| (k.clone(), (*v - usec0.get(k).copied().unwrap_or(0)) as f64 / n as f64))
        .filter(|(k, v)| *v >= 0.5 && (k.starts_with("eval") || k.starts_with("bl")))
        .collect();
    let mut c = nodes[0].client().await;
    let mut last_end = burst_at;
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_fire: BTreeMap<String, usize> = BTreeMap::new();
    let mut ok = 0usize;
    for e in common::executions(&mut c, "").await {
        if common::ms(&e.scheduled_time) != burst_at {
            continue;
        }
        *per_fire.entry(e.job_id.clone()).or_default() += 1;
        if common::state(&e) == pb::ExecutionState::Succeeded {
            ok += 1;
            last_end = last_end.max(common::ms(&e.end_time));
            *by_node.entry(e.node_id.clone()).or_default() += 1;
        }
    }
    let secs = (last_end - burst_at) as f64 / 1000.0;
    drop(nodes);
    json!({
        "scenario": scenario,
        "cores": cores(),
        "nodes": 3,
        "fires": n,
        "succeeded": ok,
        "recorded": per_fire.len(),
        "doubled": per_fire.values().filter(|v| **v > 1).count(),
        "fires_counted_by_metrics": done,
        "seconds_from_instant_to_last_end": secs,
        "fires_per_second": ok as f64 / secs.max(0.001),
        "by_node": by_node,
        "jobs_loaded_per_second": n as f64 / load_s,
        "redis_commands_per_fire": (calls1 - calls0) as f64 / n as f64,
        "redis_command_breakdown_per_fire": commands_per_fire,
        "redis_script_usec_per_fire": usec_per_fire,
        "redis_script_usec_per_fire_total": usec_per_fire.values().sum::<f64>(),
        "redis_rtt_us": rtt,
        "shards": shards,
        "redis_cpu_usec_per_fire": usec_all,
        "redis_cpu_usec_per_fire_by_primary": by_server,
        "busiest_primary_share": if usec_all > 0.0 { busiest / usec_all } else { 0.0 },
        "projected_fires_per_second_bound_on_n_primaries": projected,
        // The same bound for these primaries as the shards fell on them, each on a core of its own:
        // the busiest one saturates first.
        "projected_fires_per_second_bound_these_primaries": if busiest > 0.0 { (1e6 / busiest).round() } else { 0.0 },
    })
}

/// BullMQ's no-op drain in this same run (`benches/bullmq/drain.js`): 100,000 jobs queued first,
/// then 3 worker processes at concurrency 50 drain them, completed jobs kept; with Redis's commands
/// per job read the same way as the burst's. Node's packages come from `benches/bullmq`'s lock file
/// (`npm ci` on first use). Without node or npm the scenario says so rather than report a figure.
async fn bullmq() -> Value {
    bullmq_drain(env_num("ROTA_BENCH_BURST", 100_000) as usize, 3, 50).await
}

/// BullMQ's drain of `n` no-op jobs by `procs` worker processes at `concurrency` each.
async fn bullmq_drain(n: usize, procs: usize, concurrency: usize) -> Value {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/bullmq");
    if !dir.join("node_modules").exists() {
        let ok = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return json!({"scenario": "bullmq", "not_run": "npm ci in benches/bullmq failed (node and npm needed)"});
        }
    }
    let redis = RedisServer::start();
    let rtt = redis_rtt_us(&redis.url(), 2000);
    let port = redis.url().rsplit(':').next().unwrap_or_default().trim_end_matches('/').to_string();
    let before = redis_commandstats(&redis.url());
    let out = std::process::Command::new("node")
        .args(["drain.js", &port, &n.to_string(), &procs.to_string(), &concurrency.to_string()])
        .current_dir(&dir)
        .output();
    let after = redis_commandstats(&redis.url());
    let line = match out {
        Ok(o) if o.status.success() => {
            String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or_default().to_string()
        }
        Ok(o) => return json!({"scenario": "bullmq", "not_run": String::from_utf8_lossy(&o.stderr).to_string()}),
        Err(e) => return json!({"scenario": "bullmq", "not_run": format!("node: {e}")}),
    };
    let Ok(mut v) = serde_json::from_str::<Value>(&line) else {
        return json!({"scenario": "bullmq", "not_run": format!("unexpected output: {line}")});
    };
    // The queueing is in the counts too: BullMQ's cost per job, from add to completed.
    let diff = |f: fn(&(u64, u64)) -> u64| {
        after.iter().map(|(k, v)| f(v).saturating_sub(before.get(k).map(f).unwrap_or(0))).sum::<u64>() as f64 / n as f64
    };
    v["scenario"] = json!("bullmq");
    v["cores"] = json!(cores());
    v["redis_commands_per_job"] = json!(diff(|v| v.0));
    v["redis_usec_per_job"] = json!(diff(|v| v.1));
    v["redis_rtt_us"] = json!(rtt);
    v
}

/// External workers (issue 15): one node, and one worker process of each SDK (Python, Node.js) at
/// 64 slots. For each handler (built-in `noop`, `py.noop`, `js.noop`): a burst of
/// ROTA_BENCH_WORKER_FIRES fires due at one instant (fires per second from the instant to the last
/// end), then 20 jobs every second for ROTA_BENCH_WORKER_SECS (delay from the scheduled instant to
/// the handler's start: the worker's own clock, which its no-op returns; the record's start for the
/// built-in). BullMQ's drain with one worker process at concurrency 64 runs in the same scenario,
/// for jobs per second per worker process.
async fn workers() -> Value {
    use common::workers::{ExtWorker, Sdk};
    let n = env_num("ROTA_BENCH_WORKER_FIRES", 5_000) as usize;
    let secs = env_num("ROTA_BENCH_WORKER_SECS", 15) as i64;
    let redis = RedisServer::start();
    let rtt = redis_rtt_us(&redis.url(), 2000);
    let (nodes, _) = cluster(&redis, 1, &["--workers", "64", LIST_ALL[0], LIST_ALL[1]]).await;
    let addr = nodes[0].addr.clone();
    let _py = ExtWorker::start_on(Sdk::Python, &[&addr], "bench-py", 64, None);
    let _js = ExtWorker::start_on(Sdk::Node, &[&addr], "bench-js", 64, None);
    let mut c = nodes[0].client().await;
    // Both attached (their handlers listed).
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let listed = c.list_nodes(pb::ListNodesRequest {}).await.map(|r| r.into_inner().nodes).unwrap_or_default();
        let h: Vec<&String> = listed.iter().flat_map(|n| n.handlers.iter()).collect();
        if h.iter().any(|x| *x == "py.noop") && h.iter().any(|x| *x == "js.noop") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut by_handler = serde_json::Map::new();
    for (k, handler) in ["noop", "py.noop", "js.noop"].into_iter().enumerate() {
        // The burst: n jobs due at one instant (daily at that second).
        let burst_at = (rota::store::now_ms() / 1000 + 6) * 1000;
        let t = rota::job::ms_to_datetime(burst_at);
        let cron = chrono::Timelike::second(&t).to_string()
            + &format!(" {} {} * * *", chrono::Timelike::minute(&t), chrono::Timelike::hour(&t));
        let prefix = format!("w{k}b");
        for i in 0..n {
            let j = rota::cli::pb_job(&spec(format!("{prefix}{i:06}"), &cron, handler, Value::Null));
            c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
        }
        let deadline =
            Instant::now() + Duration::from_secs(120 + (burst_at - rota::store::now_ms()).max(0) as u64 / 1000);
        let (mut ok, mut last_end) = (0usize, burst_at);
        while Instant::now() < deadline {
            let ex = common::executions(&mut c, "").await;
            let mine: Vec<&pb::Execution> = ex.iter().filter(|e| e.job_id.starts_with(&prefix)).collect();
            ok = mine.iter().filter(|e| common::state(e) == pb::ExecutionState::Succeeded).count();
            last_end = mine.iter().map(|e| common::ms(&e.end_time)).max().unwrap_or(burst_at);
            if ok >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let burst_s = (last_end - burst_at) as f64 / 1000.0;
        // Steady: 20 jobs every second.
        let steady = format!("w{k}s");
        let from = rota::store::now_ms();
        for i in 0..20 {
            let j = rota::cli::pb_job(&spec(format!("{steady}{i:02}"), "* * * * * *", handler, Value::Null));
            c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
        }
        tokio::time::sleep(Duration::from_secs(secs as u64 + 2)).await;
        for i in 0..20 {
            let _ = c.delete_job(pb::DeleteJobRequest { id: format!("{steady}{i:02}") }).await;
        }
        let mut delays: Vec<i64> = common::executions(&mut c, "")
            .await
            .iter()
            .filter(|e| e.job_id.starts_with(&steady) && common::state(e) == pb::ExecutionState::Succeeded)
            .filter(|e| common::ms(&e.scheduled_time) > from + 1000)
            .map(|e| {
                let began = e.output.trim().parse::<i64>().unwrap_or_else(|_| common::ms(&e.start_time));
                began - common::ms(&e.scheduled_time)
            })
            .collect();
        delays.sort_unstable();
        by_handler.insert(
            handler.into(),
            json!({
                "burst_fires": n,
                "burst_succeeded": ok,
                "burst_fires_per_second": ok as f64 / burst_s.max(0.001),
                "steady_fires": delays.len(),
                "delay_ms_p50": percentile(&delays, 0.50),
                "delay_ms_p99": percentile(&delays, 0.99),
                "delay_ms_max": delays.last().copied().unwrap_or(0),
            }),
        );
    }
    drop(nodes);
    // BullMQ, one worker process at the same concurrency, in the same run.
    let bull = bullmq_drain(n, 1, 64).await;
    let rate = |h: &str| by_handler.get(h).and_then(|v| v["burst_fires_per_second"].as_f64()).unwrap_or(0.0);
    let bull_rate = bull["jobs_per_second"].as_f64().unwrap_or(0.0);
    json!({
        "scenario": "workers",
        "cores": cores(),
        "redis_rtt_us": rtt,
        "slots_per_worker": 64,
        "by_handler": by_handler,
        "bullmq_one_process": bull,
        "node_worker_vs_bullmq_one_process": if bull_rate > 0.0 { rate("js.noop") / bull_rate } else { 0.0 },
    })
}

/// Scenario 5, scale: many registered jobs, most firing rarely (yearly), plus one probe job every
/// second.
async fn scale_one(jobs: usize) -> Value {
    let redis = RedisServer::start();
    let rtt = redis_rtt_us(&redis.url(), 2000);
    let mem0 = redis_used_memory(&redis.url());
    let t = Instant::now();
    load_jobs(&redis.url(), (0..jobs).map(|i| spec(format!("s{i:07}"), "0 0 0 1 1 *", "noop", Value::Null))).await;
    let load_s = t.elapsed().as_secs_f64();
    let mem1 = redis_used_memory(&redis.url());
    load_jobs(&redis.url(), std::iter::once(spec("probe".into(), "* * * * * *", "noop", Value::Null))).await;
    // A new master on that Redis: from process start to its first fire.
    let started = Instant::now();
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let node = TestNode::spawn_env(
        &Backend::Redis(redis.url()),
        "n1",
        &["--metrics-listen", &listen],
        &[("RUST_LOG", "rota=warn")],
    );
    node.wait_serving().await;
    let mut first_fire_s = None;
    while started.elapsed() < Duration::from_secs(30) {
        if metric_sum(&[port], "rota_fires_total").await >= 1.0 {
            first_fire_s = Some(started.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Idle (only the probe fires): master CPU and Redis commands per second over 10 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, (calls0, _)) = (cpu_seconds(node.pid()), redis_calls(&redis.url()));
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu1, (calls1, _)) = (cpu_seconds(node.pid()), redis_calls(&redis.url()));
    let el = t.elapsed().as_secs_f64();
    let rss = rss_bytes(node.pid());
    drop(node);
    json!({
        "scenario": "scale",
        "cores": cores(),
        "jobs": jobs,
        "jobs_loaded_per_second": jobs as f64 / load_s,
        "redis_bytes_per_job": (mem1.saturating_sub(mem0)) as f64 / jobs as f64,
        "new_master_first_fire_s": first_fire_s,
        "master_idle_cpu_percent": (cpu1 - cpu0) / el * 100.0,
        "redis_commands_per_s_idle": (calls1 - calls0) as f64 / el,
        "master_rss_bytes": rss,
        "redis_rtt_us": rtt,
    })
}

/// Scenario 7, history: Redis bytes per retained execution, and Redis memory over time under the
/// jobs' history caps. `jobs` no-op jobs fire every second on one node whose jobs keep their newest
/// `keep` executions (`--execution-keep-last`); Redis `used_memory`, the executions retained and the
/// ended fires' hashes are sampled every 5 s. Once the caps bind (after about `keep` seconds) the
/// executions stay flat: an ended fire's hash is its execution's record (PROTOCOL 4.2), deleted with
/// it by the cap; the soak (ROTA_BENCH_HISTORY_SECS=900) shows memory flat.
async fn history() -> Value {
    let jobs = env_num("ROTA_BENCH_HISTORY_JOBS", 200) as usize;
    let secs = env_num("ROTA_BENCH_HISTORY_SECS", 60);
    let keep = env_num("ROTA_BENCH_HISTORY_KEEP", 20).to_string();
    // With ROTA_BENCH_HISTORY_POSTGRES=1 the node archives to a PostgreSQL of its own: Redis then
    // keeps the caps' worth, PostgreSQL everything.
    let pg = (env_num("ROTA_BENCH_HISTORY_POSTGRES", 0) == 1).then(common::postgres::PostgresServer::start);
    let pg_url = pg.as_ref().map(|p| p.url()).unwrap_or_default();
    let redis = RedisServer::start();
    let url = redis.url();
    let keys = rota::store::keys::Keys::new("rota", "default");
    load_jobs(&url, (0..jobs).map(|i| spec(format!("h{i:05}"), "* * * * * *", "noop", Value::Null))).await;
    let base = redis_used_memory(&url);
    let mut args = vec!["--execution-keep-last", keep.as_str(), "--workers", "64"];
    if pg.is_some() {
        args.extend(["--history-postgres", pg_url.as_str()]);
    }
    let node = TestNode::start_env(&Backend::Redis(url.clone()), "n1", &args, &[("RUST_LOG", "rota=warn")]).await;
    let mut c = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).expect("redis");
    let mut count = |pattern: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(10_000)
                .query(&mut c)
                .expect("scan");
            out.extend(batch);
            if next == 0 {
                return out;
            }
            cursor = next;
        }
    };
    let fire_pattern = format!("{}:fire:*", keys.tag());
    let exec_pattern = format!("{}*", keys.exec_prefix());
    let t = Instant::now();
    let mut samples = Vec::new();
    while t.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        // An execution is retained as its fire's hash (the fire's current attempt's record) or, for
        // the rare others, as a record kept apart (PROTOCOL 4.2).
        let (apart, fires) = (count(&exec_pattern).len(), count(&fire_pattern).len());
        samples.push(json!({"t_s": t.elapsed().as_secs(), "used_memory": redis_used_memory(&url).saturating_sub(base),
            "executions": apart + fires, "fire_hashes": fires, "records_apart": apart}));
    }
    let backlog: u64 = common::redis_cmd(redis.port, &["LLEN", &keys.archive()]).unwrap_or(0);
    drop(node);
    let archived: Option<u64> =
        pg.as_ref().and_then(|p| p.psql("rota", "SELECT count(*) FROM rota_executions").trim().parse().ok());
    // What one retained execution takes (its record: its fire's hash, or one kept apart; and its
    // entries in the two indexes), by MEMORY USAGE over a sample.
    let mut c = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).expect("redis");
    let mut usage = |key: &str| -> u64 {
        redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0).query(&mut c).unwrap_or(0)
    };
    let apart = count(&exec_pattern);
    let fires = count(&fire_pattern);
    let sample = |v: &[String]| v.iter().take(500).cloned().collect::<Vec<_>>();
    let avg = |keys: Vec<String>, usage: &mut dyn FnMut(&str) -> u64| {
        keys.iter().map(|k| usage(k)).sum::<u64>() as f64 / keys.len().max(1) as f64
    };
    let apart_record = avg(sample(&apart), &mut usage);
    let fire_hash = avg(sample(&fires), &mut usage);
    let retained = apart.len() + fires.len();
    let record = (apart_record * apart.len() as f64 + fire_hash * fires.len() as f64) / retained.max(1) as f64;
    // The indexes across jobs are bounded (a shard's newest `execution_recent`, and the open ones):
    // a cost of the shard, not of each retained execution, spread here over those retained.
    let across_jobs = usage(&keys.execs()) + usage(&keys.open_execs());
    let all_index = across_jobs as f64 / retained.max(1) as f64;
    let job_index = usage(&keys.job_execs("h00000")) as f64 / keep.parse::<f64>().unwrap_or(1.0).max(1.0);
    let last = samples.last().cloned().unwrap_or(Value::Null);
    let half = samples.get(samples.len() / 2).cloned().unwrap_or(Value::Null);
    let grown = |f: &str| last[f].as_f64().unwrap_or(0.0) - half[f].as_f64().unwrap_or(0.0);
    let span = (last["t_s"].as_f64().unwrap_or(0.0) - half["t_s"].as_f64().unwrap_or(0.0)).max(1.0);
    json!({
        "scenario": "history",
        "cores": cores(),
        "jobs": jobs,
        "fires_per_second": jobs,
        "keep_last": keep,
        "seconds": secs,
        "redis_bytes_per_retained_execution": record + all_index + job_index,
        "redis_bytes_per_retained_execution_past_the_recent": record + job_index,
        "redis_bytes_indexes_across_jobs": across_jobs,
        "redis_bytes_execution_record": record,
        "redis_bytes_per_job_index_entry": job_index,
        "redis_bytes_per_executions_index_entry": all_index,
        "redis_bytes_per_ended_fire_hash": fire_hash,
        "redis_bytes_per_record_kept_apart": apart_record,
        "records_kept_apart": apart.len(),
        "executions_retained": retained,
        "used_memory_growth_bytes_per_s_second_half": grown("used_memory") / span,
        "executions_growth_per_s_second_half": grown("executions") / span,
        "postgres": pg.is_some(),
        "archived_in_postgres": archived,
        "archive_backlog_at_end": backlog,
        "samples": samples,
    })
}

/// INFO commandstats at one moment (`redis_commandstats`).
type Stats = BTreeMap<String, (u64, u64)>;

/// One step's cost per fire, from INFO commandstats before and after it: Redis commands, the
/// scripts' microseconds, the microseconds of the commands they ran, and the difference (the cost
/// of the script call itself: its arguments, Lua, its reply).
fn step_cost(before: &Stats, after: &Stats, n: usize) -> Value {
    let (mut cmds, mut script_us, mut inner_us) = (0u64, 0u64, 0u64);
    let mut by = serde_json::Map::new();
    for (k, (calls, usec)) in after {
        let (c0, u0) = before.get(k).copied().unwrap_or((0, 0));
        let (dc, du) = (calls - c0, usec - u0);
        if dc == 0 || k == "info" {
            continue;
        }
        cmds += dc;
        if k == "evalsha" || k == "eval" {
            script_us += du;
        } else {
            inner_us += du;
        }
        by.insert(k.clone(), json!((dc as f64 / n as f64 * 100.0).round() / 100.0));
    }
    let per = |x: u64| (x as f64 / n as f64 * 10.0).round() / 10.0;
    json!({"commands": per(cmds), "script_usec": per(script_us), "commands_usec": per(inner_us),
        "script_call_usec": per(script_us.saturating_sub(inner_us)), "by_command": by})
}

/// Scenario `floor` (issue 14, parts 1 and 7): what a fire would cost Redis at the floor of the
/// one-record model, measured on a prototype that rota does not use (`benches/lua/floor_*.lua`):
/// two steps a fire, the claim putting a master's own fire straight into its hands (the fire hash
/// is the execution's record; no separate record, no cluster-wide index) and the finish writing the
/// outcome into it and entering it in its job's index. The steps run in rota's own batch loop and
/// prelude (per-item `pcall`, type checks, staged shared writes, one PUBLISH a call), with
/// `ROTA_BENCH_STEPS` (2000) fires claimed 500 a call and finished 256 a call, as in `steps`. Also
/// the bytes a retained execution would take: the ended fire hash and a job index entry (at 100 and
/// 1,000 entries a job).
/// The cost of a job's next fire through its calendars, which the scheduler's tick pays for each
/// claim (`Job::next_after_ms`), against the same schedule without calendars and a Redis round
/// trip, in the same run: a working-day job (`*/5` minutes) with a realistic calendar (15
/// holidays, the weekend, a lunch window), and the worst case the search allows (every day for ten
/// years excluded, `forward`: each search ends at its budget).
async fn calendars() -> Value {
    use rota::job::calendar::{Calendar, CalendarDef, Calendars, OnExcluded};
    let redis = RedisServer::start();
    let rtt = redis_rtt_us(&redis.url(), 2000);
    let n = env_num("ROTA_BENCH_CALENDAR_STEPS", 20_000) as usize;
    let job = |cron: &str, cal: Option<CalendarDef>| {
        let names: Vec<String> = cal.iter().map(|c| c.name.clone()).collect();
        let spec = rota::job::JobSpec {
            id: "bench".into(),
            cron: cron.into(),
            time_zone: "Europe/Berlin".into(),
            handler: "noop".into(),
            calendars: names.clone(),
            ..Default::default()
        };
        let found: std::collections::HashMap<String, std::sync::Arc<Calendar>> = cal
            .into_iter()
            .map(|d| (d.name.clone(), std::sync::Arc::new(Calendar::new(d).expect("calendar"))))
            .collect();
        rota::job::Job::new(spec).expect("job").with_calendars(Calendars::resolve(&names, &found))
    };
    // Microseconds per next fire, walking `steps` fires from a Monday morning.
    let per_next = |j: &rota::job::Job, steps: usize| {
        let mut t = chrono::DateTime::parse_from_rfc3339("2026-12-07T06:00:00Z").expect("time").timestamp_millis();
        let start = std::time::Instant::now();
        for _ in 0..steps {
            match j.next_after_ms(t) {
                Some(n) => t = n,
                None => break,
            }
        }
        start.elapsed().as_secs_f64() * 1e6 / steps as f64
    };
    let holidays = CalendarDef {
        name: "work".into(),
        time_zone: "Europe/Berlin".into(),
        excluded_dates: [
            "01-01",
            "01-06",
            "05-01",
            "10-03",
            "12-24",
            "12-25",
            "12-26",
            "12-31",
            "2027-03-26",
            "2027-03-29",
            "2027-05-06",
            "2027-05-17",
            "2027-05-27",
            "2028-04-14",
            "2028-04-17",
        ]
        .map(String::from)
        .to_vec(),
        excluded_windows: vec!["sat,sun".into(), "mon-fri 12:00-13:00".into()],
        ..Default::default()
    };
    let plain = per_next(&job("0 */5 * * * *", None), n);
    let working = per_next(&job("0 */5 * * * *", Some(holidays.clone())), n);
    let skipping = per_next(&job("0 */5 * * * *", Some(CalendarDef { on_excluded: OnExcluded::Skip, ..holidays })), n);
    // Ten years excluded, `forward`: each excluded day's move searches its 1,000 steps in vain, so
    // the search spends its whole budget (20,000 instants) and stops at a checkpoint. A put refuses
    // such a job; a calendar put later over a job already there does not.
    let worst_cal = CalendarDef {
        name: "closed".into(),
        excluded_dates: vec!["2026-12-01..2036-11-30".into()],
        on_excluded: OnExcluded::Forward,
        ..Default::default()
    };
    let worst = per_next(&job("* * * * * *", Some(worst_cal)), (n / 100).max(10));
    json!({
        "scenario": "calendars",
        "redis_rtt_us": rtt,
        "next_us_without_calendar": plain,
        "next_us_working_days_omit": working,
        "next_us_working_days_skip": skipping,
        "next_us_worst_case": worst,
        "working_days_vs_plain": working / plain,
        "worst_case_vs_redis_rtt": worst / rtt,
        "cores": cores(),
    })
}

async fn floor() -> Value {
    let n = env_num("ROTA_BENCH_STEPS", 2000) as usize;
    let redis = RedisServer::start();
    let url = redis.url();
    let rtt = redis_rtt_us(&url, 2000);
    let mut c = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).expect("redis");
    let offsets = |body: &str| body.replace("KEYS[", "KEYS[ko+").replace("ARGV[", "ARGV[ao+");
    let script = redis::Script::new(&format!(
        "{}\nlocal steps = {{}}\nsteps['claim'] = function(ko, ao)\n{}\nend\nsteps['finish'] = function(ko, ao)\n{}\nend\n{}",
        include_str!("../src/store/lua/prelude.lua"),
        offsets(include_str!("lua/floor_claim.lua")),
        offsets(include_str!("lua/floor_finish.lua")),
        include_str!("../src/store/lua/batch.lua"),
    ));
    let (tag, lease, epoch, inc, retention) = ("{f}", "n1:1:i1", "1", "i1", "86400000");
    let sched = rota::store::now_ms() / 1000 * 1000 + 60_000;
    let jobs: Vec<String> = (0..n).map(|i| format!("s{i:06}")).collect();
    let fires: Vec<String> = jobs.iter().map(|j| rota::execution::scheduled_fire_id(j, sched)).collect();
    let _: () = redis::cmd("SET").arg(format!("{tag}:lease")).arg(lease).query(&mut c).expect("lease");
    let _: () = redis::cmd("SET").arg(format!("{tag}:hb:n1")).arg(inc).query(&mut c).expect("beat");
    for j in &jobs {
        let _: () = redis::cmd("HSET")
            .arg(format!("{tag}:job:{j}"))
            .arg(&["next_ms", &sched.to_string(), "updated_ms", "1"])
            .query(&mut c)
            .expect("job");
    }
    let call = |c: &mut redis::Connection, items: Vec<(&str, Vec<String>, Vec<String>)>| -> Vec<redis::Value> {
        let mut inv = script.prepare_invoke();
        inv.arg(items.len());
        for (step, keys, args) in &items {
            inv.arg(*step).arg(keys.len()).arg(args.len());
            for k in keys {
                inv.key(k);
            }
            for a in args {
                inv.arg(a);
            }
        }
        inv.invoke(c).expect("floor call")
    };
    let ok = |replies: &[redis::Value], want: &str| {
        replies.iter().all(|r| {
            matches!(r, redis::Value::SimpleString(s) if s == want)
                || matches!(r, redis::Value::BulkString(b) if b == want.as_bytes())
        })
    };
    let (due, watch, mine) = (format!("{tag}:due"), format!("{tag}:inflight"), format!("{tag}:p:n1"));
    let t0 = redis_commandstats(&url);
    for (chunk_jobs, chunk_fires) in jobs.chunks(500).zip(fires.chunks(500)) {
        let items = chunk_jobs
            .iter()
            .zip(chunk_fires)
            .map(|(j, f)| {
                let keys = vec![
                    format!("{tag}:lease"),
                    due.clone(),
                    watch.clone(),
                    mine.clone(),
                    format!("{tag}:hb:n1"),
                    format!("{tag}:job:{j}"),
                    format!("{tag}:fire:{f}"),
                ];
                let args = vec![
                    lease.to_string(),
                    "n1".into(),
                    inc.into(),
                    retention.into(),
                    j.clone(),
                    sched.to_string(),
                    (sched + 86_400_000).to_string(),
                    "30000".into(),
                    epoch.into(),
                    f.clone(),
                ];
                ("claim", keys, args)
            })
            .collect();
        let replies = call(&mut c, items);
        assert!(ok(&replies, "CLAIMED"), "every prototype claim claimed: {:?}", replies.first());
    }
    let t1 = redis_commandstats(&url);
    let end = rota::store::now_ms().to_string();
    for (chunk_jobs, chunk_fires) in jobs.chunks(256).zip(fires.chunks(256)) {
        let items = chunk_jobs
            .iter()
            .zip(chunk_fires)
            .map(|(j, f)| {
                let keys = vec![mine.clone(), watch.clone(), format!("{tag}:fire:{f}"), format!("{tag}:jobexecs:{j}")];
                let args = vec![
                    "n1".into(),
                    inc.into(),
                    f.clone(),
                    "succeeded".into(),
                    end.clone(),
                    format!("{tag}:chan:exec"),
                ];
                ("finish", keys, args)
            })
            .collect();
        let replies = call(&mut c, items);
        assert!(ok(&replies, "OK"), "every prototype finish finished: {:?}", replies.first());
    }
    let t2 = redis_commandstats(&url);
    let usage = |c: &mut redis::Connection, key: &str| -> u64 {
        redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0).query(c).unwrap_or(0)
    };
    let sample = fires.iter().take(500).collect::<Vec<_>>();
    let record = sample.iter().map(|f| usage(&mut c, &format!("{tag}:fire:{f}"))).sum::<u64>() as f64
        / sample.len().max(1) as f64;
    // A job's index at 100 and 1,000 entries (its listpack and skiplist encodings).
    let mut entry = |count: usize| -> f64 {
        let key = format!("{tag}:jobexecs:big{count}");
        for i in 0..count {
            let at = sched + i as i64 * 1000;
            let member = rota::execution::scheduled_fire_id("s000001", at);
            let _: Result<(), _> = redis::cmd("ZADD").arg(&key).arg(at).arg(member).query(&mut c);
        }
        usage(&mut c, &key) as f64 / count as f64
    };
    let (entry_100, entry_1000) = (entry(100), entry(1000));
    json!({"scenario": "floor", "fires": n, "redis_rtt_us": rtt, "cores": cores(),
        "per_fire": step_cost(&t0, &t2, n),
        "per_step": {"claim": step_cost(&t0, &t1, n), "finish": step_cost(&t1, &t2, n)},
        "redis_bytes_ended_fire_record": record,
        "redis_bytes_job_index_entry_at_100": entry_100, "redis_bytes_job_index_entry_at_1000": entry_1000})
}

/// Scenario `steps`: what each step of a fire costs Redis, measured by driving the store directly
/// (no nodes): `ROTA_BENCH_STEPS` (2000) no-op fires claimed in batches of 500 (as a master's tick),
/// accepted in batches of 250 (as a SubmitTasks), which starts them (section 3.8 of the protocol: no
/// start step), then all finished at once (through the batcher, as a node's workers do). Per step
/// and per fire: Redis commands, the
/// scripts' microseconds, the microseconds of the commands they ran, and the difference: the cost
/// of the script call itself (its arguments, Lua, its reply). Steps run back to back, so the one
/// Redis on this machine sees nothing else.
///
/// With `here`, the fires are the master's own: claimed into its hands and started
/// (`Claim::here`, `Claim::start`), with no accept step.
async fn steps(here: bool) -> Value {
    use rota::execution::{scheduled_fire_id, ExecState, Execution};
    use rota::store::{Accept, Claim, Keep, LeaseAcquire, NodeRecord, StartedFire, Store};
    let n = env_num("ROTA_BENCH_STEPS", 2000) as usize;
    let redis = RedisServer::start();
    let url = redis.url();
    let rtt = redis_rtt_us(&url, 2000);
    let store = rota::store::redis::RedisStore::connect(&url, "rota", "default", 86_400_000).await.expect("connect");
    let s: &dyn Store = &store;
    let fence = match s.acquire_lease("n1", "i1", 600_000, 0).await.expect("lease") {
        LeaseAcquire::Acquired(f) => f,
        other => panic!("lease: {other:?}"),
    };
    let node = NodeRecord {
        node_id: "n1".into(),
        address: "n1:1".into(),
        incarnation: "i1".into(),
        version: "bench".into(),
        ..Default::default()
    };
    s.register(&node, 600_000, None).await.expect("register");
    let sched = rota::store::now_ms() / 1000 * 1000 + 60_000;
    let claims: Vec<Claim> = (0..n)
        .map(|i| {
            let id = format!("s{i:06}");
            Claim {
                job_id: id.clone(),
                sched_ms: sched,
                next_ms: Some(sched + 86_400_000),
                exec: Execution::pending(&id, scheduled_fire_id(&id, sched), sched, "n1", 1),
                overlap: rota::job::Concurrency::Allow,
                lock_ttl_ms: 60_000,
                here,
                start: here,
                priority: rota::job::Priority::Normal,
                chain: false,
                moves: false,
            }
        })
        .collect();
    // Each job due at `sched`, the instant its claim names.
    futures_util::stream::iter(&claims)
        .map(|c| async move {
            let spec = spec(c.job_id.clone(), "0 0 0 * * *", "noop", Value::Null);
            rota::store::JobStore::put_job(s, &spec, Some(sched), rota::store::now_ms()).await.expect("put job");
        })
        .buffer_unordered(64)
        .count()
        .await;
    let fires: Vec<String> = claims.iter().map(|c| c.exec.fire_id.clone()).collect();
    let cost = |before: &Stats, after: &Stats| step_cost(before, after, n);
    let mut out = serde_json::Map::new();
    let t0 = redis_commandstats(&url);
    let want = if here { rota::store::ClaimOutcome::Started } else { rota::store::ClaimOutcome::Claimed };
    for chunk in claims.chunks(500) {
        let outcomes = s.claim(&fence, chunk).await.expect("claim");
        assert!(outcomes.iter().all(|o| *o == want), "every fire claimed: {:?}", outcomes.first());
    }
    let t1 = redis_commandstats(&url);
    out.insert("claim".into(), cost(&t0, &t1));
    // What a node runs: the claim's execution, attempt 1, for the master's own fires (as
    // `Worker::run_claimed_started`); what each accept started, for a peer's.
    let mut started: Vec<StartedFire> = Vec::with_capacity(n);
    if here {
        for c in &claims {
            started.push(StartedFire {
                exec_id: c.exec.id.clone(),
                attempt: 1,
                job_id: c.job_id.clone(),
                sched_ms: sched,
                epoch: fence.epoch,
                manual: false,
                start_ms: sched,
                job: None,
                deadline_ms: None,
                args: None,
                selector: Default::default(),
            });
        }
    } else {
        for chunk in fires.chunks(250) {
            let accepts = s.accept_many(chunk, Some(fence.epoch), "n1", "i1", true).await.expect("accept");
            started.extend(accepts.into_iter().filter_map(|a| match a {
                Accept::Started(sf) => Some(*sf),
                _ => None,
            }));
        }
    }
    let t2 = redis_commandstats(&url);
    if !here {
        out.insert("accept".into(), cost(&t1, &t2));
    }
    let execs: Vec<Execution> = started
        .into_iter()
        .map(|sf| {
            let fire = scheduled_fire_id(&sf.job_id, sf.sched_ms);
            let mut e = sf.running_record(&fire, "n1");
            e.state = ExecState::Succeeded;
            e.end_ms = Some(rota::store::now_ms());
            e
        })
        .collect();
    assert_eq!(execs.len(), n, "every fire started by its take");
    let finished =
        futures_util::future::join_all(execs.iter().map(|e| s.finish(e, "n1", "i1", Keep::DEFAULT, false))).await;
    assert!(finished.iter().all(|r| r.is_ok()), "every fire finished");
    let t4 = redis_commandstats(&url);
    out.insert("finish".into(), cost(&t2, &t4));
    let all = cost(&t0, &t4);
    json!({"scenario": "steps", "path": if here { "own" } else { "peer" }, "fires": n, "redis_rtt_us": rtt,
        "cores": cores(), "per_fire": all, "per_step": out})
}

/// Scenario 6, footprint: an idle node (in-memory store and Redis), and one running 1,000
/// sleeping executions at once.
async fn footprint() -> Value {
    let redis = RedisServer::start();
    let idle_memory = TestNode::start_env(&Backend::Memory, "m1", &[], &[("RUST_LOG", "rota=warn")]).await;
    let idle_redis = TestNode::start_env(&Backend::Redis(redis.url()), "r1", &[], &[("RUST_LOG", "rota=warn")]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_mem, rss_redis) = (rss_bytes(idle_memory.pid()), rss_bytes(idle_redis.pid()));
    drop(idle_memory);
    drop(idle_redis);
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let busy = TestNode::start_env(
        &Backend::Redis(redis.url()),
        "r2",
        &["--workers", "1000", "--metrics-listen", &listen],
        &[("RUST_LOG", "rota=warn")],
    )
    .await;
    let mut c = busy.client().await;
    c.put_job(pb::PutJobRequest { job: Some(common::job("nap", "0 0 0 1 1 *", "sleep", json!(["60s"]))) })
        .await
        .expect("put");
    let calls = (0..1000).map(|_| {
        let mut c = c.clone();
        async move {
            c.trigger_job(pb::TriggerJobRequest {
                id: "nap".into(),
                idempotency_key: String::new(),
                ..Default::default()
            })
            .await
        }
    });
    let ok = futures_util::future::join_all(calls).await.iter().filter(|r| r.is_ok()).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut running = 0.0;
    while Instant::now() < deadline {
        running = metric_sum(&[port], "rota_executions_running").await;
        if running >= 1000.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_busy = rss_bytes(busy.pid());
    json!({
        "scenario": "footprint",
        "cores": cores(),
        "idle_rss_bytes_memory_store": rss_mem,
        "idle_rss_bytes_redis_store": rss_redis,
        "triggered": ok,
        "running": running,
        "rss_bytes_1000_sleeping": rss_busy,
    })
}

fn table(results: &[Value]) {
    println!();
    for r in results {
        let name = r["scenario"].as_str().unwrap_or("?");
        let mut fields: Vec<String> = Vec::new();
        if let Some(o) = r.as_object() {
            for (k, v) in o {
                if k != "scenario" && k != "cores" {
                    fields.push(format!("{k}={v}"));
                }
            }
        }
        println!("{name:<10} {}", fields.join("  "));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let only = std::env::var("ROTA_BENCH_ONLY").unwrap_or_else(|_| {
        "precision,burst,bullmq,burst_redis_cluster,burst_sharded,burst_redis_cluster_sharded,workers,calendars,scale,steps,floor,footprint,history"
            .into()
    });
    let want = |s: &str| only.split(',').any(|x| x.trim() == s);
    let mut results = Vec::new();
    fn emit(v: Value, results: &mut Vec<Value>) {
        println!("{v}");
        results.push(v);
    }
    if want("precision") {
        emit(precision("precision", None, 1).await, &mut results);
    }
    if want("precision_at_instant") {
        emit(precision("precision_at_instant", Some(0), 1).await, &mut results);
    }
    if want("precision_sharded") {
        emit(precision("precision_sharded", None, env_num("ROTA_BENCH_SHARDS", 16) as u16).await, &mut results);
    }
    if want("burst") {
        emit(burst().await, &mut results);
    }
    if want("bullmq") {
        emit(bullmq().await, &mut results);
    }
    if want("burst_redis_cluster") {
        emit(burst_redis_cluster().await, &mut results);
    }
    if want("burst_sharded") {
        emit(burst_sharded().await, &mut results);
    }
    if want("burst_redis_cluster_sharded") {
        emit(burst_redis_cluster_sharded().await, &mut results);
    }
    // rota's burst against BullMQ's drain, both measured in this run.
    let rate = |scenario: &str, field: &str| {
        results.iter().find(|v| v["scenario"] == scenario).and_then(|v| v[field].as_f64())
    };
    if let (Some(rota), Some(bull)) = (rate("burst", "fires_per_second"), rate("bullmq", "jobs_per_second")) {
        let v = json!({"scenario": "burst_vs_bullmq", "rota_fires_per_second": rota,
            "bullmq_jobs_per_second": bull, "ratio": rota / bull});
        emit(v, &mut results);
    }
    if want("workers") {
        emit(workers().await, &mut results);
    }
    if want("calendars") {
        emit(calendars().await, &mut results);
    }
    if want("scale") {
        let sizes = std::env::var("ROTA_BENCH_SCALE").unwrap_or_else(|_| "100000,1000000".into());
        for n in sizes.split(',').filter_map(|s| s.trim().parse::<usize>().ok()) {
            emit(scale_one(n).await, &mut results);
        }
    }
    if want("steps") {
        emit(steps(false).await, &mut results);
        emit(steps(true).await, &mut results);
    }
    if want("floor") {
        emit(floor().await, &mut results);
    }
    if want("footprint") {
        emit(footprint().await, &mut results);
    }
    if want("history") {
        emit(history().await, &mut results);
    }
    table(&results);
}
