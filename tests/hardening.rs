//! Defects found by probing a release build as an attacker and a careless operator would (issue
//! 12), each reproduced here against real processes on a real Redis: a forged epoch, epochs past
//! 2^53, keys of the wrong type, a start whose reply is lost, and a Redis restart that used to
//! declare live nodes dead.
mod common;

use std::time::Duration;

use common::{eventually, executions, job, state, Backend, RedisServer, TestNode};
use redis::AsyncCommands;
use rota::pb;
use rota::store::{ClusterStore, FireStore, JobStore, LeaseAcquire, MasterOnly, RedisStore, MAX_EPOCH};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

async fn redis_conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).expect("client").get_multiplexed_async_connection().await.expect("redis")
}

async fn node_client(n: &TestNode) -> pb::node_service_client::NodeServiceClient<tonic::transport::Channel> {
    pb::node_service_client::NodeServiceClient::new(n.channel().await)
}

#[tokio::test]
async fn lease_epochs_are_exact_integers_and_a_forged_counter_is_repaired() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), "rota", "default", 60_000).await.expect("store");
    let mut r = redis_conn(&redis).await;
    let key = store.keys().epoch();
    let acquire = |node: &'static str, floor: u64| {
        let store = &store;
        async move {
            match store.acquire_lease(node, "inc", 60_000, floor).await {
                Ok(LeaseAcquire::Acquired(h)) => {
                    assert!(store.release_lease(&h).await.expect("release"));
                    Ok(h.epoch)
                }
                Ok(other) => panic!("not acquired: {other:?}"),
                Err(e) => Err(e),
            }
        }
    };
    let now = chrono::Utc::now().timestamp_millis() as u64;
    // 2^60, as the probe left it: in Lua floating point 2^60 + 1 == 2^60, so two masters got the
    // same epoch. Such a counter can only be forged: it is repaired from Redis's clock.
    let _: () = r.set(&key, "1152921504606846976").await.expect("set");
    let a = acquire("n1", 0).await.expect("acquire");
    assert!(a <= MAX_EPOCH && a >= now, "epoch {a} after a forged counter");
    let b = acquire("n2", 0).await.expect("acquire");
    // Epochs only rise. Here the counter was just repaired from Redis's clock, which floors the next
    // epoch too, so the step is one or more (the clock moved on); the exact +1 steps are checked
    // below, where the counter is far ahead of the clock.
    assert!(b > a, "each acquisition raises the epoch: {a} then {b}");
    // The value the float bug stored (string.format('%d') of 1.8e19 wraps to -2^63).
    let _: () = r.set(&key, "-9223372036854775808").await.expect("set");
    let c = acquire("n1", 0).await.expect("acquire after a wrapped counter");
    assert!(c >= now && c <= MAX_EPOCH, "epoch {c}");
    // Exact +1 steps right up to the bound, then a refusal rather than a wrap or a repeat.
    let _: () = r.set(&key, (MAX_EPOCH - 2).to_string()).await.expect("set");
    assert_eq!(acquire("n1", 0).await.expect("acquire"), MAX_EPOCH - 1);
    assert_eq!(acquire("n2", 0).await.expect("acquire"), MAX_EPOCH);
    let e = acquire("n1", 0).await.expect_err("no epoch past the bound");
    assert!(e.to_string().contains("would pass"), "{e}");
    let stored: String = r.get(&key).await.expect("get");
    assert_eq!(stored, MAX_EPOCH.to_string(), "a refused acquisition writes nothing");
    // A floor past the bound (a peer's forged epoch, were it ever taken as a floor) is refused.
    let _: () = r.set(&key, "5").await.expect("set");
    assert!(acquire("n1", u64::MAX).await.is_err());
    assert!(acquire("n1", MAX_EPOCH + 1).await.is_err());
    let f = acquire("n1", now + 1_000_000).await.expect("a floor within the bound is honoured");
    assert_eq!(f, now + 1_000_001);
}

#[tokio::test]
async fn a_forged_epoch_in_submit_tasks_neither_sticks_nor_stops_election() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let mut n1 = TestNode::start(&b, "n1", &[]).await;
    let mut n2 = TestNode::start(&b, "n2", &[]).await;
    let (master, epoch) = common::agreed_master(&[&n1, &n2]).await;
    let (old, other) = if master == "n1" { (&mut n1, &mut n2) } else { (&mut n2, &mut n1) };
    let mut nc = node_client(other).await;
    let task = pb::SubmitTaskRequest { job_id: "x".into(), fire_id: "x@1".into(), ..Default::default() };
    // Past the protocol's bound: refused as bad input, naming the field.
    let e = nc
        .submit_tasks(pb::SubmitTasksRequest { epoch: u64::MAX, tasks: vec![task.clone()] })
        .await
        .expect_err("forged epoch");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("epoch:"), "{}", e.message());
    // Within the bound but not the store's: refused by the accept, and not recorded either.
    let e = nc
        .submit_tasks(pb::SubmitTasksRequest { epoch: MAX_EPOCH, tasks: vec![task] })
        .await
        .expect_err("epoch the store never issued");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let echoed = nc
        .report_load(pb::ReportLoadRequest {
            node_id: "probe".into(),
            load: Some(pb::NodeLoad { active_workers: 0, max_workers: 1, queue_depth: 0 }),
            measured_at: None,
        })
        .await
        .expect("report load")
        .into_inner()
        .epoch;
    assert!(echoed < MAX_EPOCH && echoed >= epoch, "ReportLoad echoes {echoed}; the real epoch is {epoch}");
    // The master goes; the other node must take over with a real epoch, and fire.
    assert_eq!(old.terminate(), Some(0));
    let (new_master, new_epoch) = common::agreed_master(&[other]).await;
    assert_eq!(new_master, other.node_id);
    assert!(new_epoch > epoch && new_epoch < MAX_EPOCH, "epoch {epoch} -> {new_epoch}");
    let mut c = other.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("after", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    eventually(WAIT, "the new master fires", || async {
        let mut c = other.client().await;
        executions(&mut c, "after")
            .await
            .iter()
            .any(|e| state(e) == pb::ExecutionState::Succeeded && e.epoch == new_epoch)
            .then_some(())
    })
    .await;
}

/// Arms a failpoint on a node started with `--metrics-listen 127.0.0.1:<metrics>`.
#[cfg(feature = "failpoints")]
async fn arm(metrics: u16, point: &str, actions: &str) {
    let url = format!("http://127.0.0.1:{metrics}/failpoints/{point}");
    let r = reqwest::Client::new().put(&url).body(actions.to_string()).send().await.expect("arm failpoint");
    assert!(r.status().is_success(), "cannot arm {point}: {}", r.status());
}

/// Per second of the job from its first to its last fire: how many executions, and in which states.
#[cfg(feature = "failpoints")]
async fn fires_by_second(n: &TestNode, job: &str) -> std::collections::BTreeMap<i64, Vec<pb::ExecutionState>> {
    let mut c = n.client().await;
    let mut by: std::collections::BTreeMap<i64, Vec<pb::ExecutionState>> = Default::default();
    for e in executions(&mut c, job).await {
        by.entry(common::ms(&e.scheduled_time)).or_default().push(state(&e));
    }
    by
}

/// The probe's case: the start script committed (the fire hash says `running` by this incarnation,
/// its record says `running`) and its reply was lost. A repeated start by the same incarnation now
/// answers "yours, run it", so the fire runs once, at once; it used to stay `running` forever, run by
/// no one (the rescan's start was refused as "already running"). The job is master-only: its fires
/// are the ones `start.lua` starts (any other fire is started by its take, with no start step).
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_start_whose_reply_is_lost_runs_once_and_is_not_stranded() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let metrics = common::free_port();
    // The handler writes every run it makes to a file of its own: runs are counted there, not in
    // rota's records (a resumed run reuses its execution id, so records alone cannot show a double run).
    let dir = tempfile::tempdir().expect("tempdir");
    let sidelog = dir.path().join("runs.tsv");
    let env = [("ROTA_SIDELOG", sidelog.to_str().expect("path"))];
    let n = TestNode::start_env(&b, "n1", &["--metrics-listen", &format!("127.0.0.1:{metrics}")], &env).await;
    common::agreed_master(&[&n]).await;
    // The next three start replies are thrown away after their scripts committed.
    arm(metrics, "lose_start_reply", "3*return").await;
    let mut c = n.client().await;
    let mut j = job("lost-reply", "* * * * * *", "sidelog", json!({"ms": 20}));
    j.master_only = true;
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Every fire that is due by now (and had a few seconds to end) has exactly one execution, which
    // succeeded: none stranded `running`, none run twice.
    let by = eventually(WAIT, "every fire of the job ran once and ended", || async {
        let by = fires_by_second(&n, "lost-reply").await;
        let settled: Vec<_> = by.iter().filter(|(t, _)| **t < chrono::Utc::now().timestamp_millis() - 1500).collect();
        (settled.len() >= 3 && settled.iter().all(|(_, s)| s.as_slice() == [pb::ExecutionState::Succeeded]))
            .then_some(by)
    })
    .await;
    assert!(by.values().all(|s| s.len() == 1), "one execution per fire: {by:?}");
    assert!(n.log().contains("started before by this incarnation"), "the lost replies were hit");
    // Each fire started once by the handler's own account.
    let mut starts: std::collections::BTreeMap<String, usize> = Default::default();
    for line in std::fs::read_to_string(&sidelog).expect("side log").lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.first() == Some(&"S") && f.get(1) == Some(&"lost-reply") {
            *starts.entry(f.get(2).unwrap_or(&"").to_string()).or_default() += 1;
        }
    }
    assert!(starts.len() >= 3 && starts.values().all(|n| *n == 1), "handler starts per fire: {starts:?}");
}

/// A one-and-a-half-second Redis restart (AOF, `appendfsync always`) longer than the nodes' TTL:
/// their heartbeat keys expire while Redis is down. The nodes used to be declared dead, re-register
/// as new incarnations, and have their running fires recorded `lost` with an alert, although no node
/// died. Now a node takes its expired key back, and the master judges liveness only after a node TTL
/// of unbroken contact with a store that has been up that long.
#[tokio::test]
async fn a_redis_restart_longer_than_the_node_ttl_declares_no_live_node_dead() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"], "");
    let b = Backend::Redis(redis.url());
    let nodes = [TestNode::start(&b, "n1", &[]).await, TestNode::start(&b, "n2", &[]).await];
    common::agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let mut c = nodes[0].client().await;
    for i in 0..6 {
        let j = job(&format!("slow-{i}"), "* * * * * *", "sleep", json!(["700ms"]));
        c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..2 {
        redis.kill();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redis.restart();
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    for n in &nodes {
        let log = n.log();
        assert!(!log.contains("incarnation revoked"), "node {} was declared dead:\n{log}", n.node_id);
        assert!(!log.contains("fire lost with its node"), "node {} recorded a live node's fire lost", n.node_id);
    }
    let mut c = nodes[0].client().await;
    let now = chrono::Utc::now().timestamp_millis();
    for i in 0..6 {
        let all = executions(&mut c, &format!("slow-{i}")).await;
        let lost: Vec<_> = all.iter().filter(|e| state(e) == pb::ExecutionState::Lost).collect();
        assert!(lost.is_empty(), "lost executions of slow-{i}: {lost:?}");
        let resumed =
            all.iter().any(|e| common::ms(&e.scheduled_time) > now - 3000 && state(e) != pb::ExecutionState::Lost);
        assert!(resumed, "slow-{i} fires again after the restarts");
    }
    // Nothing is left open: a fire claimed as Redis went down may wait for the new master's sweep
    // (its dispatch deadline, a lease TTL), so this is checked until it settles.
    eventually(Duration::from_secs(30), "every fire before the last restart ended", || async {
        let mut c = nodes[0].client().await;
        for i in 0..6 {
            let open = executions(&mut c, &format!("slow-{i}")).await.into_iter().any(|e| {
                common::ms(&e.scheduled_time) < now - 3000
                    && matches!(state(&e), pb::ExecutionState::Pending | pb::ExecutionState::Running)
            });
            if open {
                return None;
            }
        }
        Some(())
    })
    .await;
}

fn keys() -> rota::store::keys::Keys {
    rota::store::keys::Keys::new("rota", "default")
}

/// Executions of `job` scheduled in the last `window_ms` (ending 1.5 s ago, so they had time to end).
async fn recent(n: &TestNode, job: &str, window_ms: i64) -> Vec<pb::ExecutionState> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut c = n.client().await;
    executions(&mut c, job)
        .await
        .iter()
        .filter(|e| (now - 1500 - window_ms..now - 1500).contains(&common::ms(&e.scheduled_time)))
        .map(state)
        .collect()
}

/// `DEL` a job's hash and `RPUSH` a list under its key: every tick used to fail with WRONGTYPE and
/// every job of the cluster stopped firing. Now that job is set aside (out of the due index, named in
/// the dead-letter list, logged, counted and alerted) and the others go on; putting it again says what
/// is wrong, and it can be deleted and put again.
#[tokio::test]
async fn a_job_key_of_the_wrong_type_is_set_aside_and_the_others_keep_firing() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let metrics = common::free_port();
    let n = TestNode::start(&b, "n1", &["--metrics-listen", &format!("127.0.0.1:{metrics}")]).await;
    common::agreed_master(&[&n]).await;
    let mut c = n.client().await;
    for id in ["ok-1", "ok-2", "victim"] {
        c.put_job(pb::PutJobRequest { job: Some(job(id, "* * * * * *", "noop", json!(null))) }).await.expect("put");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut r = redis_conn(&redis).await;
    let k = keys().job("victim");
    let _: () =
        redis::pipe().del(&k).ignore().rpush(&k, "not a job").ignore().query_async(&mut r).await.expect("clobber");
    tokio::time::sleep(Duration::from_secs(4)).await;
    for id in ["ok-1", "ok-2"] {
        let states = recent(&n, id, 2000).await;
        assert!(
            states.len() >= 2 && states.iter().all(|s| *s == pb::ExecutionState::Succeeded),
            "{id} must keep firing: {states:?}\n{}",
            n.log()
        );
    }
    let dlq: Vec<String> = r.lrange(keys().dlq(), 0, -1).await.expect("dlq");
    assert!(dlq.iter().any(|e| e.contains(&k) && e.contains("is a list")), "set aside with its reason: {dlq:?}");
    let log = n.log();
    assert!(log.contains("set aside: a stored key is not what it should be"), "logged");
    assert!(log.contains("stored_key_set_aside"), "alerted");
    let m =
        reqwest::get(format!("http://127.0.0.1:{metrics}/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(m.lines().any(|l| l.starts_with("rota_set_aside_total 1")), "counted:\n{m}");
    // Putting it again says what is wrong; deleting it clears the key; then it fires again.
    let e = c
        .put_job(pb::PutJobRequest { job: Some(job("victim", "* * * * * *", "noop", json!(null))) })
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("is a list") && e.message().contains("delete the job"), "{}", e.message());
    c.delete_job(pb::DeleteJobRequest { id: "victim".into() }).await.expect("delete");
    c.put_job(pb::PutJobRequest { job: Some(job("victim", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    eventually(WAIT, "the job fires again", || async {
        recent(&n, "victim", 1500).await.contains(&pb::ExecutionState::Succeeded).then_some(())
    })
    .await;
    assert_eq!(n.health().await, Some(1), "SERVING throughout");
}

/// `SET p:<node> x` for a few seconds, then `DEL`: `accept.lua` wrote each fire's state before its
/// `LPUSH` failed, and Redis kept the first write, so fires stayed `accepted` in no list and their
/// executions `pending` forever. Now every script checks its keys' types before its first write: the
/// accept writes nothing, the fire goes the durable-queue way, and every fire ends recorded.
#[tokio::test]
async fn a_clobbered_processing_list_leaves_no_fire_half_moved() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n = TestNode::start(&b, "n1", &[]).await;
    common::agreed_master(&[&n]).await;
    let mut c = n.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("steady", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut r = redis_conn(&redis).await;
    let p = keys().processing("n1");
    let _: () = r.set(&p, "x").await.expect("clobber");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _: () = r.del(&p).await.expect("restore");
    // Every fire scheduled so far ends in a terminal state (run late, or misfired), none stays open.
    let settled_before = chrono::Utc::now().timestamp_millis() - 500;
    eventually(Duration::from_secs(90), "no execution left open", || async {
        let mut c = n.client().await;
        let all = executions(&mut c, "steady").await;
        let open: Vec<_> = all
            .iter()
            .filter(|e| common::ms(&e.scheduled_time) < settled_before)
            .filter(|e| matches!(state(e), pb::ExecutionState::Pending | pb::ExecutionState::Running))
            .map(|e| e.fire_id.clone())
            .collect();
        open.is_empty().then_some(())
    })
    .await;
    // And no fire hash of those fires is left open (accepted or queued in no list, say).
    let fires: Vec<String> = r.keys(keys().fire("steady@*")).await.expect("keys");
    for f in fires {
        let sched: i64 = f.rsplit_once('@').and_then(|(_, t)| t.parse().ok()).unwrap_or(i64::MAX);
        if sched >= settled_before {
            continue;
        }
        let st: Option<String> = r.hget(&f, "state").await.expect("state");
        assert!(
            matches!(st.as_deref(), Some("succeeded" | "failed" | "timed_out" | "misfired" | "skipped" | "lost")),
            "{f} is left {st:?}"
        );
    }
}

/// A fire key planted ahead of its instant: the fire does not run (it looks claimed), and this is
/// now said at WARN with what the key held, and counted.
#[tokio::test]
async fn a_planted_fire_key_is_reported_with_its_content() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n = TestNode::start(&b, "n1", &[]).await;
    common::agreed_master(&[&n]).await;
    let mut c = n.client().await;
    let next = (chrono::Utc::now().timestamp_millis() / 1000 + 3) * 1000;
    let mut r = redis_conn(&redis).await;
    let _: () = r.hset(keys().fire(&format!("planted@{next}")), "planted-by", "mallory").await.expect("plant");
    c.put_job(pb::PutJobRequest { job: Some(job("planted", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    eventually(WAIT, "the warning", || async { n.log().contains("mallory").then_some(()) }).await;
    let line = n.log().lines().find(|l| l.contains("mallory")).map(str::to_string).unwrap_or_default();
    assert!(line.contains("WARN") && line.contains("planted"), "{line}");
}

/// A fire that says `accepted` but that no list holds (here: its node's processing list deleted by
/// hand, then the node killed before it ran the fire) used to wait forever: nothing looked for it.
/// Every fire not yet started stays in the master's watch set; one found in no list is queued again,
/// and runs or is recorded (here misfired: its start deadline passed meanwhile), with an alert.
#[tokio::test]
async fn a_fire_accepted_in_no_list_is_found_and_recorded() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let args = ["--workers", "1", "--misfire-threshold-ms", "2000"];
    let mut n = TestNode::start(&b, "n1", &args).await;
    common::agreed_master(&[&n]).await;
    let mut c = n.client().await;
    // The only worker is busy for a long while; the next fire of `waiter` is accepted and waits.
    c.put_job(pb::PutJobRequest { job: Some(job("hog", "0 0 0 1 1 * 2099", "sleep", json!(["60s"]))) })
        .await
        .expect("put");
    c.trigger_job(pb::TriggerJobRequest { id: "hog".into(), ..Default::default() }).await.expect("trigger");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let next = (chrono::Utc::now().timestamp_millis() / 1000 + 2) * 1000;
    // Master-only: its fire is only taken (`accepted`) ahead of its instant, not started by its take
    // (a started fire's home is its node's processing list alone: section 10 of the protocol).
    let mut waiter = job("waiter", &format!("{} * * * * *", next / 1000 % 60), "noop", json!(null));
    waiter.master_only = true;
    c.put_job(pb::PutJobRequest { job: Some(waiter) }).await.expect("put");
    let fire = keys().fire(&format!("waiter@{next}"));
    let mut r = redis_conn(&redis).await;
    eventually(WAIT, "the fire accepted on n1", || async {
        let st: Option<String> = redis_conn(&redis).await.hget(&fire, "state").await.ok()?;
        (st.as_deref() == Some("accepted")).then_some(())
    })
    .await;
    let _: () = r.del(keys().processing("n1")).await.expect("delete the processing list");
    n.kill();
    let n = TestNode::start(&b, "n1", &args).await;
    let e = eventually(Duration::from_secs(30), "the orphan recorded", || async {
        let mut c = n.client().await;
        executions(&mut c, "waiter").await.into_iter().find(|e| {
            common::ms(&e.scheduled_time) == next
                && !matches!(state(e), pb::ExecutionState::Pending | pb::ExecutionState::Running)
        })
    })
    .await;
    assert!(matches!(state(&e), pb::ExecutionState::Misfired | pb::ExecutionState::Succeeded), "{e:?}");
    assert!(n.log().contains("in no list: queued again"), "said so:\n{}", n.log());
}

/// A start that found the fire past its start deadline marks it misfired; when that reply is lost
/// the caller asks again and must hear "misfired" again (it writes the misfired record), not "not
/// yours": the claim's `pending` record stayed open forever.
#[tokio::test]
async fn a_misfired_start_asked_again_is_misfired_again() {
    use rota::store::{Accept, Claim, ClaimOutcome, FireTiming, NodeRecord, Start, WatermarkWrite};
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), "rota", "default", 600_000)
        .await
        .expect("store")
        .with_fire_timing(FireTiming { misfire_threshold_ms: 1, dispatch_deadline_ms: 2000 });
    let LeaseAcquire::Acquired(lease) = store.acquire_lease("n1", "i1", 60_000, 0).await.expect("lease") else {
        panic!("no lease")
    };
    let now = rota::store::now_ms();
    let spec =
        rota::job::JobSpec { id: "m".into(), cron: "* * * * * *".into(), handler: "noop".into(), ..Default::default() };
    assert!(matches!(store.put_job(&spec, Some(now), now).await.expect("put"), WatermarkWrite::Done { .. }));
    let fire = rota::execution::scheduled_fire_id("m", now);
    let c = Claim {
        job_id: "m".into(),
        sched_ms: now,
        next_ms: Some(now + 1000),
        exec: rota::execution::Execution::pending("m", fire.clone(), now, "n1", 1),
        overlap: rota::job::Concurrency::Allow,
        lock_ttl_ms: 60_000,
        here: false,
        start: false,
        priority: rota::job::Priority::Normal,
        chain: false,
        moves: false,
    };
    assert_eq!(store.claim(&lease, &[c]).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    let rec = NodeRecord {
        node_id: "n1".into(),
        address: "127.0.0.1:1".into(),
        incarnation: "i1".into(),
        started_ms: now,
        beat_ms: now,
        version: "0".into(),
        handlers: vec![],
        load: Default::default(),
        master: false,
        draining: false,
        clock_offset_ms: None,
        ..Default::default()
    };
    store.register(&rec, 60_000, None).await.expect("register");
    assert_eq!(store.take_only(&fire, Some(lease.epoch), "n1", "i1").await.expect("accept"), Accept::Accepted);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let first = store.start(&fire, "n1", "i1", "fresh-1", MasterOnly::Anyway).await.expect("start");
    let Start::Misfired { exec_id, .. } = &first else { panic!("{first:?}") };
    let again = store.start(&fire, "n1", "i1", "fresh-2", MasterOnly::Anyway).await.expect("start again");
    assert_eq!(again, first, "the same misfire, with the claim's execution ({exec_id})");
}

/// A take starts the fires it takes (a SubmitTasks batch of them, in one step). A fire whose job's
/// stored definition does not decode (written by hand, or by a foreign version) is that fire's
/// problem alone: the batch committed, every fire of it is answered started, and that one carries
/// no definition (its worker records it failed) instead of failing the whole batch, which left
/// every fire of it started in the node's list with no task to run it.
#[tokio::test]
async fn a_definition_that_does_not_decode_fails_only_its_own_fire_of_an_accept_batch() {
    use rota::store::{Accept, Claim, ClaimOutcome, NodeRecord, WatermarkWrite};
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), "rota", "default", 600_000).await.expect("store");
    let LeaseAcquire::Acquired(lease) = store.acquire_lease("n1", "i1", 60_000, 0).await.expect("lease") else {
        panic!("no lease")
    };
    let rec = NodeRecord { node_id: "n1".into(), incarnation: "i1".into(), ..Default::default() };
    store.register(&rec, 60_000, None).await.expect("register");
    let sched = rota::store::now_ms() + 5_000;
    let mut fires = Vec::new();
    for id in ["good", "bad"] {
        let spec = rota::job::JobSpec {
            id: id.into(),
            cron: "* * * * * *".into(),
            handler: "noop".into(),
            ..Default::default()
        };
        let put = store.put_job(&spec, Some(sched), rota::store::now_ms()).await.expect("put");
        assert!(matches!(put, WatermarkWrite::Done { .. }), "{put:?}");
        let fire = rota::execution::scheduled_fire_id(id, sched);
        let c = Claim {
            job_id: id.into(),
            sched_ms: sched,
            next_ms: Some(sched + 1000),
            exec: rota::execution::Execution::pending(id, fire.clone(), sched, "n1", 1),
            overlap: rota::job::Concurrency::Allow,
            lock_ttl_ms: 60_000,
            here: false,
            start: false,
            priority: rota::job::Priority::Normal,
            chain: false,
            moves: false,
        };
        assert_eq!(store.claim(&lease, &[c]).await.expect("claim"), vec![ClaimOutcome::Claimed]);
        fires.push(fire);
    }
    let mut r = redis_conn(&redis).await;
    let _: () = r.hset(store.keys().job("bad"), "spec", "{not json").await.expect("plant");
    let got = store.accept_many(&fires, Some(lease.epoch), "n1", "i1", true).await.expect("the batch is answered");
    let [Accept::Started(good), Accept::Started(bad)] = got.as_slice() else { panic!("both started: {got:?}") };
    assert_eq!(good.job.as_ref().map(|j| j.id.as_str()), Some("good"));
    assert!(bad.job.is_none(), "{bad:?}");
    assert_eq!(store.node_fires("n1").await.expect("lists").1.len(), 2);
}

/// The reap that records a dead node's running fire `lost` commits in one script, and the caller
/// then closes the attempt's record and alerts. When that reply was lost, the entry was already out
/// of the dead node's list: nobody ever closed the record, which said `running` forever, and no
/// alert went out. The script now leaves the attempt in the store's `closing` set in the same step,
/// and the master's next sweep closes it.
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_reap_whose_reply_is_lost_still_closes_the_dead_attempt() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let metrics = common::free_port();
    let master = TestNode::start(&b, "n1", &["--metrics-listen", &format!("127.0.0.1:{metrics}")]).await;
    common::agreed_master(&[&master]).await;
    let mut worker = TestNode::start(&b, "n2", &[]).await;
    common::agreed_master(&[&master, &worker]).await;
    let mut c = master.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("long", "0 0 0 1 1 * 2099", "sleep", json!(["60s"]))) })
        .await
        .expect("put");
    // Triggered on n2 itself: a manual fire runs on the node that was asked.
    let mut w = worker.client().await;
    let t = w.trigger_job(pb::TriggerJobRequest { id: "long".into(), ..Default::default() }).await.expect("trigger");
    let exec_id = t.into_inner().execution.map(|e| e.id).unwrap_or_default();
    eventually(WAIT, "the run started on n2", || async {
        let mut c = master.client().await;
        let e = c.get_execution(pb::GetExecutionRequest { id: exec_id.clone() }).await.ok()?.into_inner();
        (e.execution.map(|e| state(&e)) == Some(pb::ExecutionState::Running)).then_some(())
    })
    .await;
    arm(metrics, "lose_reap_reply", "1*return").await;
    worker.kill();
    let closed = eventually(Duration::from_secs(30), "the dead attempt recorded lost", || async {
        let mut c = master.client().await;
        let e = c.get_execution(pb::GetExecutionRequest { id: exec_id.clone() }).await.ok()?.into_inner().execution?;
        (state(&e) == pb::ExecutionState::Lost).then_some(e)
    })
    .await;
    assert!(closed.error.contains("died while running it"), "{}", closed.error);
    let log = master.log();
    assert!(log.contains("reply lost (lose_reap_reply)") || log.contains("lose_reap_reply"), "the failpoint was hit");
    assert!(log.contains("execution_lost"), "alerted:\n{log}");
}

/// A handler that panics (an embedding program's bug) used to end its task with the fire still
/// `running`: stranded before, and since a start can be resumed, run again by every rescan. The
/// panic is now the run's failure, recorded with the fire's outcome.
#[tokio::test]
async fn a_panicking_handler_fails_its_run_and_is_not_run_again() {
    use rota::worker::handlers::{FireContext, Handler, HandlerFailure, Registry};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    struct Panics(Arc<AtomicU32>);
    #[async_trait::async_trait]
    impl Handler for Panics {
        async fn run(&self, _: &FireContext, _: &serde_json::Value) -> Result<String, HandlerFailure> {
            self.0.fetch_add(1, Ordering::SeqCst);
            panic!("boom")
        }
    }
    let runs = Arc::new(AtomicU32::new(0));
    let mut registry = Registry::with_builtins();
    registry.register("panics", Panics(Arc::clone(&runs)));
    let config = rota::config::Config { listen: "127.0.0.1:0".into(), node_id: "p1".into(), ..Default::default() };
    let node = rota::api::start(config, registry).await.expect("node");
    let spec = rota::job::JobSpec {
        id: "p".into(),
        cron: "0 0 0 1 1 * 2099".into(),
        handler: "panics".into(),
        ..Default::default()
    };
    node.parts[0].scheduler.put_job(spec).await.expect("put");
    let t = node.parts[0].scheduler.trigger("p", &Default::default()).await.expect("trigger");
    let e = eventually(WAIT, "the run recorded failed", || async {
        let e = node.shards.get_execution(&t.execution.as_ref().expect("an execution").id).await.ok()??;
        (e.state == rota::execution::ExecState::Failed).then_some(e)
    })
    .await;
    assert!(e.error.contains("panicked"), "{}", e.error);
    // Past a rescan period: still one run.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    node.shutdown().await;
}

/// `SET` the held index (`T:held`, the jobs with fires waiting for their lock) to a string: the
/// master's sweep cannot hand locks on (it says so), but its other duties go on: a dead node's
/// running fire is still re-run elsewhere. (Before, the sweep's first step failed it whole.)
#[tokio::test]
async fn a_clobbered_held_index_holds_up_none_of_the_sweep() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &[]).await;
    common::agreed_master(&[&n1]).await;
    let mut n2 = TestNode::start(&b, "n2", &[]).await;
    let mut r = redis_conn(&redis).await;
    let _: () = r.set(keys().held_jobs(), "not an index").await.expect("clobber");
    let mut slow = job("slow", "0 0 3 29 2 *", "sleep", json!(["3s"]));
    slow.routing = pb::RoutingStrategy::Failover as i32;
    slow.failover_nodes = vec!["n2".into(), "n1".into()];
    slow.recovery = pb::RecoveryPolicy::Rerun as i32;
    let mut c = n1.client().await;
    c.put_job(pb::PutJobRequest { job: Some(slow) }).await.expect("put");
    let r0 = c
        .trigger_job(pb::TriggerJobRequest { id: "slow".into(), target_node: "n2".into(), ..Default::default() })
        .await
        .expect("trigger");
    let fire = r0.into_inner().execution.expect("execution").fire_id;
    eventually(WAIT, "it runs on n2", || async {
        let execs = executions(&mut n1.client().await, "slow").await;
        execs.iter().any(|e| e.node_id == "n2" && state(e) == pb::ExecutionState::Running).then_some(())
    })
    .await;
    n2.kill();
    let rerun = eventually(WAIT, "the dead node's run is re-run on n1", || async {
        let execs = executions(&mut n1.client().await, "slow").await;
        execs.into_iter().find(|e| e.fire_id == fire && e.node_id == "n1" && state(e) == pb::ExecutionState::Succeeded)
    })
    .await;
    assert_eq!(rerun.attempt, 2, "{rerun:?}");
    assert!(n1.log().contains("cannot hand free locks on to held fires"), "{}", n1.log());
}
