//! One suite, two stores: every behaviour of the `Store` contract runs against the in-memory store
//! and against a real `redis-server`.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use rota::execution::{scheduled_fire_id, ExecState, Execution};
use rota::job::{Concurrency, JobSpec, Priority};
use rota::store::{
    now_ms, Accept, Beat, Cancel, Chained, Claim, ClaimOutcome, ClusterStore, Enqueue, ExecFilter, Fence, Finish,
    FireOwn, FireState, FireStore, JobWrite, Keep, LeaseAcquire, Load, MasterOnly, MemoryStore, NodeFires, NodeRecord,
    PauseNote, Reap, ReapBy, ReapRequest, RedisStore, Register, Start, StartedFire, StopRequest, Store, TriggerOutcome,
    WatermarkWrite, Writer,
};

const RETENTION_MS: u64 = 600_000;

fn spec(id: &str) -> JobSpec {
    JobSpec { id: id.into(), cron: "* * * * * *".into(), handler: "noop".into(), ..Default::default() }
}

fn claim(job: &str, sched: i64, next: Option<i64>, forbid: bool) -> Claim {
    claim_with(job, sched, next, if forbid { Concurrency::Forbid } else { Concurrency::Allow })
}

fn claim_with(job: &str, sched: i64, next: Option<i64>, overlap: Concurrency) -> Claim {
    Claim {
        job_id: job.into(),
        sched_ms: sched,
        next_ms: next,
        exec: Execution::pending(job, scheduled_fire_id(job, sched), sched, "n1", 1),
        overlap,
        lock_ttl_ms: 60_000,
        here: false,
        start: false,
        priority: Priority::Normal,
        chain: false,
        moves: false,
    }
}

/// PutJob's write of `spec`: the pause state kept, any revision.
fn api_write(spec: &JobSpec, next_ms: Option<i64>) -> JobWrite<'_> {
    JobWrite { spec, paused: None, next_ms, writer: Writer::Api, applied: None, expect_rev: None, now_ms: now_ms() }
}

/// Takes the master lease for the test and returns it (the fence for claims).
async fn master(s: &dyn Store) -> Fence {
    match s.acquire_lease("n1", "inc1", 600_000, 0).await.expect("acquire") {
        LeaseAcquire::Acquired(h) => h,
        other => panic!("lease not acquired: {other:?}"),
    }
}

/// A lease value someone else would hold.
fn lease_value(v: &str) -> Fence {
    Fence::parse(v).expect("a lease value")
}

async fn put(s: &dyn Store, id: &str, next: i64) {
    match s.put_job(&spec(id), Some(next), now_ms()).await.expect("put") {
        WatermarkWrite::Done { .. } => {}
        other => panic!("put {id}: {other:?}"),
    }
}

async fn claim_is_once_per_fire(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    put(&*s, "a", 1000).await;
    let r = s.claim(&fence, &[claim("a", 1000, Some(2000), false)]).await.expect("claim");
    assert_eq!(r, vec![ClaimOutcome::Claimed]);
    // The same fire again, as a second node or a replay would try: refused.
    let r = s.claim(&fence, &[claim("a", 1000, Some(2000), false)]).await.expect("claim");
    assert_eq!(r, vec![ClaimOutcome::Stale]);
    let rec = s.get_job("a").await.expect("get").expect("exists");
    assert_eq!((rec.next_ms, rec.last_ms), (Some(2000), Some(1000)));
    // Claims in one batch are applied in order: 2000 then 3000.
    let r = s
        .claim(&fence, &[claim("a", 2000, Some(3000), false), claim("a", 3000, Some(4000), false)])
        .await
        .expect("claim");
    assert_eq!(r, vec![ClaimOutcome::Claimed, ClaimOutcome::Claimed]);
}

async fn watermark_never_moves_back(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    put(&*s, "a", 1000).await;
    s.claim(&fence, &[claim("a", 1000, Some(2000), false)]).await.expect("claim");
    // Replacing the job with a first fire at or before the last claimed instant is refused.
    let r = s.put_job(&spec("a"), Some(1000), now_ms()).await.expect("put");
    assert_eq!(r, WatermarkWrite::Behind { last_ms: 1000 });
    let r = s.put_job(&spec("a"), Some(1500), now_ms()).await.expect("put");
    assert!(matches!(r, WatermarkWrite::Done { created: false, .. }), "{r:?}");
    let r = s.set_paused("a", false, Some(900), now_ms(), None).await.expect("resume");
    assert_eq!(r, Some(WatermarkWrite::Behind { last_ms: 1000 }));
}

async fn due_index_orders_and_respects_pause(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    put(&*s, "late", 3000).await;
    put(&*s, "early", 1000).await;
    put(&*s, "future", 9_000_000_000_000).await;
    let due: Vec<String> = s.due_jobs(5000, 10).await.expect("due").jobs.into_iter().map(|r| r.spec.id).collect();
    assert_eq!(due, vec!["early", "late"]);
    assert_eq!(s.next_due_ms().await.expect("next"), Some(1000));
    s.set_paused("early", true, None, now_ms(), None).await.expect("pause").expect("exists");
    let due: Vec<String> = s.due_jobs(5000, 10).await.expect("due").jobs.into_iter().map(|r| r.spec.id).collect();
    assert_eq!(due, vec!["late"]);
    let rec = s.get_job("early").await.expect("get").expect("exists");
    assert!(rec.spec.paused && rec.next_ms.is_none());
    // A claim racing with the pause is refused.
    put(&*s, "p", 1000).await;
    s.set_paused("p", true, None, now_ms(), None).await.expect("pause");
    assert_eq!(
        s.claim(&fence, &[claim("p", 1000, Some(2000), false)]).await.expect("claim"),
        vec![ClaimOutcome::Paused]
    );
    assert_eq!(s.set_paused("missing", true, None, now_ms(), None).await.expect("pause"), None);
}

async fn list_jobs_in_id_order_with_paging(s: Arc<dyn Store>) {
    assert!(s.list_jobs(None, 10).await.expect("list").is_empty());
    for id in ["c", "a", "b", "d"] {
        put(&*s, id, 1000).await;
    }
    let ids = |v: Vec<rota::store::JobRecord>| v.into_iter().map(|r| r.spec.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_jobs(None, 3).await.expect("list")), vec!["a", "b", "c"]);
    assert_eq!(ids(s.list_jobs(Some("b"), 3).await.expect("list")), vec!["c", "d"]);
    assert!(s.get_job("zz").await.expect("get").is_none());
}

async fn delete_stops_claims(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    put(&*s, "a", 1000).await;
    assert!(s.delete_job("a").await.expect("delete"));
    assert!(!s.delete_job("a").await.expect("delete"));
    assert!(s.due_jobs(i64::MAX / 2, 10).await.expect("due").jobs.is_empty());
    assert_eq!(s.claim(&fence, &[claim("a", 1000, Some(2000), false)]).await.expect("claim"), vec![ClaimOutcome::Gone]);
}

async fn forbid_lock_skips_overlap_until_released(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    put(&*s, "f", 1000).await;
    let first = claim("f", 1000, Some(2000), true);
    assert_eq!(s.claim(&fence, std::slice::from_ref(&first)).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    let second = claim("f", 2000, Some(3000), true);
    assert_eq!(s.claim(&fence, std::slice::from_ref(&second)).await.expect("claim"), vec![ClaimOutcome::Skipped]);
    let skipped = s.get_execution(&second.exec.id).await.expect("get").expect("recorded");
    assert_eq!(skipped.state, ExecState::Skipped);
    assert!(skipped.error.contains("still running"), "{}", skipped.error);
    // Only the owner can renew; finishing releases.
    assert!(s.renew_lock("f", &first.exec.fire_id, 60_000).await.expect("renew"));
    assert!(!s.renew_lock("f", &second.exec.fire_id, 60_000).await.expect("renew"));
    let mut done = first.exec.clone();
    done.state = ExecState::Succeeded;
    s.finish_execution(&done, true).await.expect("finish");
    assert!(!s.renew_lock("f", &first.exec.fire_id, 60_000).await.expect("renew"));
    assert_eq!(
        s.claim(&fence, &[claim("f", 3000, Some(4000), true)]).await.expect("claim"),
        vec![ClaimOutcome::Claimed]
    );
}

async fn misfire_and_duplicate_claims_advance_the_watermark(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    put(&*s, "m", 1000).await;
    let mut c = claim("m", 1000, Some(5000), false);
    c.exec.state = ExecState::Misfired;
    assert_eq!(s.claim(&fence, &[c.clone()]).await.expect("claim"), vec![ClaimOutcome::Misfired]);
    assert_eq!(s.get_execution(&c.exec.id).await.expect("get").map(|e| e.state), Some(ExecState::Misfired));
    // A fire id already recorded (e.g. left from a deleted and re-created job) is not run again,
    // and the schedule moves on instead of stalling.
    put(&*s, "d", 7000).await;
    s.claim(&fence, &[claim("d", 7000, Some(8000), false)]).await.expect("claim");
    s.delete_job("d").await.expect("delete");
    put(&*s, "d", 7000).await;
    let out = s.claim(&fence, &[claim("d", 7000, Some(8000), false)]).await.expect("claim");
    assert!(matches!(out.as_slice(), [ClaimOutcome::Duplicate(_)]), "{out:?}");
    assert_eq!(s.get_job("d").await.expect("get").and_then(|r| r.next_ms), Some(8000));
}

/// A manual fire's pending execution for `job` (what TriggerJob records).
fn manual(job: &str) -> Execution {
    Execution::manual(job, now_ms(), "n1")
}

async fn trigger_is_idempotent_by_key(s: Arc<dyn Store>) {
    put(&*s, "t", 9_000_000_000_000).await;
    let mk = || manual("t");
    let first = mk();
    assert_eq!(
        s.trigger(&first, Some("k1"), Concurrency::Allow, 1000, &FireOwn::default(), Priority::Normal)
            .await
            .expect("trigger"),
        TriggerOutcome::Created(first.clone())
    );
    let again = mk();
    // The record read back: a pending execution names no node until one takes its fire (the Redis
    // store's record is the fire hash, section 4.2); the memory store keeps the one it was given.
    let pending = |e: &Execution| Execution { node_id: String::new(), ..e.clone() };
    match s
        .trigger(&again, Some("k1"), Concurrency::Allow, 1000, &FireOwn::default(), Priority::Normal)
        .await
        .expect("trigger")
    {
        TriggerOutcome::Deduplicated(e) => assert_eq!(pending(&e), pending(&first)),
        other => panic!("{other:?}"),
    }
    let other = mk();
    assert_eq!(
        s.trigger(&other, Some("k2"), Concurrency::Allow, 1000, &FireOwn::default(), Priority::Normal)
            .await
            .expect("trigger"),
        TriggerOutcome::Created(other.clone())
    );
    let nokey = mk();
    assert_eq!(
        s.trigger(&nokey, None, Concurrency::Allow, 1000, &FireOwn::default(), Priority::Normal)
            .await
            .expect("trigger"),
        TriggerOutcome::Created(nokey.clone())
    );
    let mut gone = mk();
    gone.job_id = "missing".into();
    assert_eq!(
        s.trigger(&gone, None, Concurrency::Allow, 1000, &FireOwn::default(), Priority::Normal).await.expect("trigger"),
        TriggerOutcome::Gone
    );
    // Forbid: a manual fire while another fire holds the lock is recorded as skipped.
    let locked = mk();
    assert!(matches!(
        s.trigger(&locked, None, Concurrency::Forbid, 60_000, &FireOwn::default(), Priority::Normal).await.expect("t"),
        TriggerOutcome::Created(_)
    ));
    let blocked = mk();
    assert!(matches!(
        s.trigger(&blocked, None, Concurrency::Forbid, 60_000, &FireOwn::default(), Priority::Normal).await.expect("t"),
        TriggerOutcome::Skipped(_)
    ));
    let rec = s.get_execution(&blocked.id).await.expect("get").expect("the skipped fire's record");
    assert_eq!((rec.state, rec.manual, rec.fire_id.as_str()), (ExecState::Skipped, true, blocked.fire_id.as_str()));
    assert!(rec.error.contains("concurrency forbid") && rec.end_ms.is_some(), "{rec:?}");
}

async fn executions_list_newest_first_with_filters_and_pages(s: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let job = if i % 2 == 0 { "even" } else { "odd" };
        let mut e = Execution::pending(job, scheduled_fire_id(job, i), i, "n1", 1);
        e.state = if i == 3 { ExecState::Failed } else { ExecState::Succeeded };
        assert!(s.create_execution(&e).await.expect("create"));
        ids.push(e.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let page = |job: Option<&str>, state: Option<ExecState>, before: Option<String>, limit| ExecFilter {
        job_id: job.map(str::to_string),
        state,
        before,
        limit,
        ..Default::default()
    };
    let (p1, next) = s.list_executions(&page(None, None, None, 3)).await.expect("list");
    assert_eq!(
        p1.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![ids[6].clone(), ids[5].clone(), ids[4].clone()]
    );
    let (p2, next2) = s.list_executions(&page(None, None, next, 3)).await.expect("list");
    assert_eq!(
        p2.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]
    );
    let (p3, next3) = s.list_executions(&page(None, None, next2, 3)).await.expect("list");
    assert_eq!((p3.len(), next3), (1, None));
    let (odd, _) = s.list_executions(&page(Some("odd"), None, None, 10)).await.expect("list");
    assert_eq!(odd.len(), 3);
    let (failed, _) = s.list_executions(&page(None, Some(ExecState::Failed), None, 10)).await.expect("list");
    assert_eq!(failed.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), vec![ids[3].clone()]);
    assert_eq!(s.get_execution(&ids[0]).await.expect("get").map(|e| e.id), Some(ids[0].clone()));
    assert_eq!(s.get_execution("00000000-0000-7000-8000-000000000000").await.expect("get"), None);
}

async fn watchers_see_every_change(s: Arc<dyn Store>) {
    let mut rx = s.subscribe().await;
    let mut e = Execution::pending("w", scheduled_fire_id("w", 1), 1, "n1", 1);
    // The Redis relay subscribes asynchronously: publish until the first change arrives.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        s.update_execution(&e).await.expect("update");
        if let Ok(Ok(got)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            assert_eq!(got.id, e.id);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "watcher never received a change");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    while rx.try_recv().is_ok() {}
    e.state = ExecState::Running;
    s.update_execution(&e).await.expect("update");
    e.state = ExecState::Succeeded;
    s.finish_execution(&e, false).await.expect("finish");
    let a = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("change 1").expect("open");
    let b = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("change 2").expect("open");
    assert_eq!((a.state, b.state), (ExecState::Running, ExecState::Succeeded));
}

async fn lease_is_exclusive_fenced_and_monotonic(s: Arc<dyn Store>) {
    let LeaseAcquire::Acquired(a) = s.acquire_lease("n1", "i1", 600_000, 0).await.expect("acquire") else {
        panic!("first acquisition")
    };
    assert_eq!((a.node_id.as_str(), a.incarnation.as_str()), ("n1", "i1"));
    assert!(a.epoch > now_ms() as u64 - 10_000, "epoch floored at the store's clock in ms: {}", a.epoch);
    match s.acquire_lease("n2", "i2", 600_000, 0).await.expect("acquire") {
        LeaseAcquire::Held(Some(h)) => assert_eq!(h, a),
        other => panic!("second node took a held lease: {other:?}"),
    }
    assert_eq!(s.lease().await.expect("lease"), Some(a.clone()));
    assert!(s.renew_lease(&a, 600_000).await.expect("renew"));
    assert!(!s.renew_lease(&lease_value("n2:1:i2"), 600_000).await.expect("renew"), "only the holder renews");
    assert!(!s.release_lease(&lease_value("n2:1:i2")).await.expect("release"), "only the holder releases");
    // Claims fenced by a value that is not the lease are refused, and change nothing.
    put(&*s, "a", 1000).await;
    let e = s.claim(&lease_value("n2:1:i2"), &[claim("a", 1000, Some(2000), false)]).await.expect_err("fenced");
    assert!(matches!(e, rota::Error::Fenced(_)), "{e:?}");
    assert_eq!(s.get_job("a").await.expect("get").and_then(|r| r.next_ms), Some(1000));
    assert!(s.release_lease(&a).await.expect("release"));
    assert_eq!(s.lease().await.expect("lease"), None);
    let e = s.claim(&a, &[claim("a", 1000, Some(2000), false)]).await.expect_err("released lease fences");
    assert!(matches!(e, rota::Error::Fenced(_)), "{e:?}");
    // The next master gets a higher epoch, and never one at or below a floor a node has seen.
    let LeaseAcquire::Acquired(b) = s.acquire_lease("n2", "i2", 600_000, 0).await.expect("acquire") else {
        panic!("acquire after release")
    };
    assert!(b.epoch > a.epoch);
    s.release_lease(&b).await.expect("release");
    let floor = b.epoch + 1_000_000;
    let LeaseAcquire::Acquired(c) = s.acquire_lease("n3", "i3", 600_000, floor).await.expect("acquire") else {
        panic!("acquire with floor")
    };
    assert!(c.epoch > floor);
    // An expired lease can be taken by another node.
    s.release_lease(&c).await.expect("release");
    let LeaseAcquire::Acquired(d) = s.acquire_lease("n1", "i4", 100, 0).await.expect("acquire") else { panic!() };
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!s.renew_lease(&d, 100).await.expect("renew"), "an expired lease cannot be renewed");
    assert!(matches!(s.acquire_lease("n2", "i5", 600_000, 0).await.expect("acquire"), LeaseAcquire::Acquired(_)));
}

async fn nodes_table(s: Arc<dyn Store>) {
    let rec = NodeRecord {
        node_id: "n1".into(),
        address: "127.0.0.1:1".into(),
        incarnation: "i".into(),
        started_ms: 1,
        beat_ms: now_ms(),
        version: "0".into(),
        handlers: vec!["noop".into()],
        load: Load { active: 1, max: 4, queue: 0 },
        master: true,
        draining: false,
        clock_offset_ms: None,
        ..Default::default()
    };
    assert_eq!(s.register(&rec, 1000, None).await.expect("register"), Register::Registered);
    assert!(matches!(s.beat(&rec, 1000).await.expect("beat"), Beat::Alive { .. }));
    let nodes = s.list_nodes().await.expect("nodes");
    assert_eq!(nodes, vec![rec.clone()]);
    // A second live process with the same node id is refused.
    let other = NodeRecord { incarnation: "j".into(), ..rec.clone() };
    assert_eq!(s.register(&other, 1000, None).await.expect("register"), Register::InUse("i".into()));
    assert!(matches!(s.beat(&other, 1000).await.expect("beat"), Beat::Revoked { .. }));
    // Replacing only the incarnation named: another one still refused.
    assert_eq!(s.register(&other, 1000, Some("x")).await.expect("register"), Register::InUse("i".into()));
    // An incarnation whose key merely expired (nobody took its work over: a store outage) takes it
    // back at its next beat.
    s.register(&rec, 100, None).await.expect("register");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(s.dead_nodes().await.expect("dead"), vec!["n1".to_string()]);
    assert!(matches!(s.beat(&rec, 100).await.expect("beat"), Beat::Alive { .. }));
    assert!(s.dead_nodes().await.expect("dead").is_empty());
    // Expired again; now a new process takes the id: the old incarnation can never beat again.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(s.register(&other, 1000, None).await.expect("register"), Register::Registered);
    assert!(matches!(s.beat(&rec, 1000).await.expect("beat"), Beat::Revoked { .. }));
    assert!(s.dead_nodes().await.expect("dead").is_empty());
    // A process revoked in another shard registers its new incarnation here over its previous
    // one, whose key here still lives; the previous one is then out here too.
    let newer = NodeRecord { incarnation: "k".into(), ..rec.clone() };
    assert_eq!(s.register(&newer, 1000, Some("j")).await.expect("register"), Register::Registered);
    assert!(matches!(s.beat(&other, 1000).await.expect("beat"), Beat::Revoked { .. }));
    assert!(matches!(s.beat(&newer, 1000).await.expect("beat"), Beat::Alive { .. }));
}

/// An incarnation whose running work the master took over (re-run or recorded lost) never beats
/// again, even though its key merely expired: the reap buried it in the same step.
async fn a_reaped_incarnation_never_comes_back(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    put(&*s, "b", 1000).await;
    s.claim(&fence, &[claim("b", 1000, Some(2000), false)]).await.expect("claim");
    let rec = node("n9", "dead-inc");
    s.register(&rec, 100, None).await.expect("register");
    let fire = "b@1000".to_string();
    assert_eq!(
        s.accept_many(std::slice::from_ref(&fire), None, "n9", "dead-inc", false).await.expect("accept"),
        vec![Accept::Accepted]
    );
    assert!(matches!(s.start(&fire, "n9", "dead-inc", "e1", MasterOnly::Anyway).await.expect("start"), Start::Run(_)));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let req = ReapRequest {
        by: ReapBy::Master(fence.clone()),
        dead_node: "n9".into(),
        fires: NodeFires::Taken,
        fire_id: fire.clone(),
        target: "n9".into(),
        rerun: false,
        max_recoveries: Some(0),
        lock_ttl_ms: 1000,
    };
    let Reap::Lost { exec_id, .. } = s.reap(&req).await.expect("reap") else { panic!("lost") };
    assert!(matches!(s.beat(&rec, 1000).await.expect("beat"), Beat::Revoked { .. }));
    // The dead attempt waits in the store to be closed (recorded lost, alerted) until the caller
    // says it is: a reap whose reply was lost is closed by the next sweep.
    let closings = s.closings().await.expect("closings");
    assert_eq!(closings.len(), 1, "{closings:?}");
    assert!(
        closings[0].lost
            && closings[0].exec_id == exec_id
            && closings[0].fire_id == fire
            && closings[0].dead_node == "n9"
    );
    s.closed(&exec_id).await.expect("closed");
    assert!(s.closings().await.expect("closings").is_empty());
}

fn node(id: &str, inc: &str) -> NodeRecord {
    NodeRecord {
        node_id: id.into(),
        address: format!("{id}:1"),
        incarnation: inc.into(),
        started_ms: 1,
        beat_ms: now_ms(),
        version: "0".into(),
        handlers: vec![],
        load: Load::default(),
        master: false,
        draining: false,
        clock_offset_ms: Some(-3),
        ..Default::default()
    }
}

/// Claims one fire of job `j` and returns its fire id. `sched` is an offset from now: a fire's start
/// deadline is its scheduled instant plus the misfire threshold.
async fn claimed_fire(s: &dyn Store, fence: &Fence, j: &str, sched: i64, forbid: bool) -> String {
    let sched = now_ms() / 1000 * 1000 + sched;
    put(s, j, sched).await;
    let c = claim(j, sched, Some(sched + 1000), forbid);
    assert_eq!(s.claim(fence, std::slice::from_ref(&c)).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    c.exec.fire_id
}

/// Claims job `job`'s fire at `sched` (the job put first), of a job at `priority`; its fire id.
async fn claimed_at(s: &dyn Store, fence: &Fence, job: &str, sched: i64, priority: Priority) -> String {
    put(s, job, sched).await;
    let c = Claim { priority, ..claim(job, sched, Some(sched + 1000), false) };
    assert_eq!(s.claim(fence, std::slice::from_ref(&c)).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    c.exec.fire_id
}

/// A wait on `node`'s empty queue, woken by `fire` queued 300 ms into it (long before the wait
/// would end), then a take: what it took.
async fn woken_by_a_push(s: &Arc<dyn Store>, fence: &Fence, node: &str, fire: &str) -> Option<rota::store::Taken> {
    let waiter = {
        let (s, node) = (Arc::clone(s), node.to_string());
        tokio::spawn(async move {
            s.wait_queued(&node, Duration::from_secs(30)).await.expect("wait");
            s.take_queued(&node, Priority::ALL).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.enqueue(fence, fire, node).await.expect("enqueue"), Enqueue::Queued);
    let got = tokio::time::timeout(Duration::from_secs(20), waiter).await.expect("woken by the push");
    got.expect("join").expect("take")
}

fn epoch_of(fence: &Fence) -> u64 {
    fence.epoch
}

/// A claim asked `here` puts its fire into the claimer's own hands in the claim's step: accepted by
/// it, in its processing list, started by it with the execution recorded at claim, out of anyone
/// else's reach, as an accept at once after the claim would. While the claimer's heartbeat does
/// not hold the fence's incarnation, the fire is claimed `dispatching`, as without `here`; a fire
/// ended at its claim (skipped by the lock) is not taken; one call mixes both kinds.
async fn a_claim_here_goes_into_the_claimers_hands(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let sched = now_ms() / 1000 * 1000 + 1000;
    let here = |job: &str, forbid: bool| Claim { here: true, ..claim(job, sched, Some(sched + 1000), forbid) };
    // No heartbeat of the claimer's incarnation yet: claimed as usual, for the router.
    put(&*s, "h0", sched).await;
    assert_eq!(s.claim(&fence, &[here("h0", false)]).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    assert_eq!(s.node_fires("n1").await.expect("lists"), (vec![], vec![]));
    s.register(&node("n1", &fence.incarnation), 60_000, None).await.expect("register");
    s.register(&node("n2", "i2"), 60_000, None).await.expect("register");
    for j in ["h1", "h2"] {
        put(&*s, j, sched).await;
    }
    let (c1, c2) = (here("h1", true), claim("h2", sched, Some(sched + 1000), false));
    let got = s.claim(&fence, &[c1.clone(), c2.clone()]).await.expect("claim");
    assert_eq!(got, vec![ClaimOutcome::Here, ClaimOutcome::Claimed]);
    let fire = c1.exec.fire_id.clone();
    assert_eq!(s.node_fires("n1").await.expect("lists"), (vec![], vec![fire.clone()]));
    let (epoch, inc) = (epoch_of(&fence), fence.incarnation.as_str());
    assert_eq!(s.take_only(&fire, Some(epoch), "n1", inc).await.expect("accept"), Accept::Already);
    assert_eq!(s.take_only(&fire, Some(epoch), "n2", "i2").await.expect("accept"), Accept::Taken);
    assert_eq!(s.enqueue(&fence, &fire, "n2").await.expect("enqueue"), Enqueue::NotDispatching(FireState::Accepted));
    // The other fire of the call is dispatching: a peer may take it.
    assert_eq!(s.take_only(&c2.exec.fire_id, Some(epoch), "n2", "i2").await.expect("accept"), Accept::Accepted);
    let Start::Run(sf) = s.start(&fire, "n1", inc, "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("not started")
    };
    assert_eq!(sf.exec_id, c1.exec.id, "the first run uses the execution recorded at claim");
    assert_eq!(sf.deadline_ms, None, "the start checked the deadline itself");
    // The forbid job's next fire meets the lock its running fire holds: skipped, not taken.
    let next = Claim { here: true, ..claim("h1", sched + 1000, Some(sched + 2000), true) };
    assert_eq!(s.claim(&fence, &[next]).await.expect("claim"), vec![ClaimOutcome::Skipped]);
    assert_eq!(s.node_fires("n1").await.expect("lists"), (vec![], vec![fire]));
}

/// Section 3.8: a fire taken ahead of its instant is started in the same step, by its claim
/// (`here` and `start`) or its accept, so the node needs no start step: its first attempt (the
/// execution made at claim) reads `running` on that node at once, and a start asked again by the
/// same incarnation (the rescan's, after a lost reply) resumes it under that execution. A fire of a
/// master-only job is only taken, for its start to check the stored lease at its instant.
async fn a_fire_taken_ahead_starts_in_the_same_step(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let (epoch, inc) = (epoch_of(&fence), fence.incarnation.clone());
    s.register(&node("n1", &inc), 60_000, None).await.expect("register");
    s.register(&node("n2", "i2"), 60_000, None).await.expect("register");
    let sched = now_ms() / 1000 * 1000 + 2000;
    for j in ["t1", "t2"] {
        put(&*s, j, sched).await;
    }
    let only = JobSpec { master_only: true, ..spec("t3") };
    s.put_job(&only, Some(sched), now_ms()).await.expect("put");
    let started = Claim { here: true, start: true, ..claim("t1", sched, Some(sched + 1000), false) };
    let (c2, c3) = (claim("t2", sched, Some(sched + 1000), false), claim("t3", sched, Some(sched + 1000), false));
    let got = s.claim(&fence, &[started.clone(), c2.clone(), c3.clone()]).await.expect("claim");
    assert_eq!(got, vec![ClaimOutcome::Started, ClaimOutcome::Claimed, ClaimOutcome::Claimed]);
    let (f1, f2, f3) = (&started.exec.fire_id, &c2.exec.fire_id, &c3.exec.fire_id);
    assert_eq!(s.node_fires("n1").await.expect("lists"), (vec![], vec![f1.clone()]));
    let rec = s.get_execution(&started.exec.id).await.expect("get").expect("its record");
    assert_eq!((rec.state, rec.attempt, rec.node_id.as_str()), (ExecState::Running, 1, "n1"));
    assert_eq!(rec.start_ms, Some(sched), "it begins at its instant");
    let Start::Resume(sf) = s.start(f1, "n1", &inc, "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("a started fire's start by its incarnation resumes it")
    };
    assert_eq!((sf.exec_id.as_str(), sf.attempt), (started.exec.id.as_str(), 1));
    assert!(sf.deadline_ms.is_some_and(|d| d > sched), "a first attempt resumes with its start deadline: {sf:?}");
    assert_eq!(s.take_only(f1, Some(epoch), "n2", "i2").await.expect("accept"), Accept::Taken);
    // A peer's accept starts the fire it takes, under the claim's execution, with its deadline.
    let Accept::Started(sf) = s.accept(f2, Some(epoch), "n2", "i2").await.expect("accept") else {
        panic!("not started by its accept")
    };
    assert_eq!((sf.exec_id.as_str(), sf.attempt, sf.sched_ms, sf.epoch), (c2.exec.id.as_str(), 1, sched, epoch));
    assert_eq!(sf.job.as_ref().map(|j| j.id.as_str()), Some("t2"), "the job's definition comes with it");
    assert!(sf.deadline_ms.is_some_and(|d| d > sched), "it must begin by its deadline: {sf:?}");
    let rec = s.get_execution(&c2.exec.id).await.expect("get").expect("its record");
    assert_eq!((rec.state, rec.node_id.as_str()), (ExecState::Running, "n2"));
    assert_eq!(s.accept(f2, Some(epoch), "n2", "i2").await.expect("accept"), Accept::Already, "a retried SubmitTask");
    assert_eq!(s.node_fires("n2").await.expect("lists"), (vec![], vec![f2.clone()]));
    let Start::Resume(sf) = s.start(f2, "n2", "i2", "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("the accept's start resumes")
    };
    assert_eq!(sf.exec_id, c2.exec.id);
    // A master-only job's fire is taken only: its start checks the lease at its instant.
    assert_eq!(s.accept(f3, Some(epoch), "n1", &inc).await.expect("accept"), Accept::Accepted);
    let rec = s.get_execution(&c3.exec.id).await.expect("get").expect("its record");
    assert_eq!(rec.state, ExecState::Pending);
}

/// An idle node off a failover job's list does not steal its queued fire (it would only hand it
/// on); a node of the list does.
async fn a_failover_fire_is_stolen_only_by_a_node_of_its_list(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    for (n, i) in [("n1", "i1"), ("n2", "i2"), ("n3", "i3")] {
        s.register(&node(n, i), 60_000, None).await.expect("register");
    }
    let sched = now_ms() / 1000 * 1000 + 1000;
    let fo =
        JobSpec { routing: rota::job::Routing::Failover, failover_nodes: vec!["n2".into(), "n1".into()], ..spec("fo") };
    assert!(matches!(s.put_job(&fo, Some(sched), now_ms()).await.expect("put"), WatermarkWrite::Done { .. }));
    let c = claim("fo", sched, Some(sched + 1000), false);
    assert_eq!(s.claim(&fence, std::slice::from_ref(&c)).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    let fire = c.exec.fire_id;
    assert_eq!(s.enqueue(&fence, &fire, "n1").await.expect("enqueue"), Enqueue::Queued);
    assert_eq!(s.steal("n1", "n3", "i3").await.expect("steal"), None, "n3 is off the list");
    assert_eq!(s.node_fires("n1").await.expect("lists"), (vec![fire.clone()], vec![]));
    assert_eq!(s.steal("n1", "n2", "i2").await.expect("steal").as_deref(), Some(fire.as_str()));
}

async fn accept_and_enqueue_are_exclusive(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let epoch = epoch_of(&fence);
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    s.register(&node("n2", "i2"), 60_000, None).await.expect("register");
    // The target accepts first: the master's fallback enqueue finds it taken and does nothing.
    let f1 = claimed_fire(&*s, &fence, "a", 1000, false).await;
    assert_eq!(s.take_only(&f1, Some(epoch), "n2", "i2").await.expect("accept"), Accept::Accepted);
    assert_eq!(s.take_only(&f1, Some(epoch), "n2", "i2").await.expect("accept"), Accept::Already, "retried SubmitTask");
    assert_eq!(s.enqueue(&fence, &f1, "n2").await.expect("enqueue"), Enqueue::NotDispatching(FireState::Accepted));
    assert_eq!(s.take_only(&f1, Some(epoch), "n1", "i1").await.expect("accept"), Accept::Taken);
    // The master enqueues first (the call timed out): a late SubmitTask finds it taken.
    let f2 = claimed_fire(&*s, &fence, "b", 1000, false).await;
    assert_eq!(s.enqueue(&fence, &f2, "n2").await.expect("enqueue"), Enqueue::Queued);
    assert_eq!(s.take_only(&f2, Some(epoch), "n2", "i2").await.expect("accept"), Accept::Taken);
    // Fencing: a stale epoch, a dead incarnation, a deposed master.
    let f3 = claimed_fire(&*s, &fence, "c", 1000, false).await;
    assert_eq!(s.take_only(&f3, Some(epoch - 1), "n2", "i2").await.expect("accept"), Accept::StaleEpoch);
    assert_eq!(s.take_only(&f3, Some(epoch), "n2", "old").await.expect("accept"), Accept::NotLive);
    assert!(matches!(s.enqueue(&lease_value("n9:1:x"), &f3, "n2").await, Err(rota::Error::Fenced(_))));
    assert_eq!(s.enqueue(&fence, &f3, "nobody").await.expect("enqueue"), Enqueue::TargetDead);
    let (q, p) = s.node_fires("n2").await.expect("lists");
    assert_eq!((q, p), (vec![f2.clone()], vec![f1.clone()]));
}

async fn queue_pop_start_finish(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let fire = claimed_fire(&*s, &fence, "f", 1000, true).await;
    assert_eq!(s.take_queued("n1", Priority::ALL).await.expect("pop").map(|t| t.fire_id), None, "an empty queue: None");
    assert_eq!(s.enqueue(&fence, &fire, "n1").await.expect("enqueue"), Enqueue::Queued);
    assert_eq!(s.take_queued("n1", Priority::ALL).await.expect("pop").map(|t| t.fire_id), Some(fire.clone()));
    assert_eq!(s.node_fires("n1").await.expect("lists"), (vec![], vec![fire.clone()]));
    let Start::Run(sf) = s.start(&fire, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("not started")
    };
    assert_eq!((sf.attempt, sf.job_id.as_str(), format!("f@{}", sf.sched_ms)), (1, "f", fire.clone()));
    assert_ne!(sf.exec_id, "fresh", "the first run uses the execution recorded at claim");
    assert_eq!(sf.job.as_ref().map(|j| j.id.as_str()), Some("f"), "the start returns the job's definition");
    // The start wrote the attempt's `running` record, in the Execution type's own form.
    let running = s.get_execution(&sf.exec_id).await.expect("get").expect("running record");
    let mut want = Execution::pending("f", fire.clone(), sf.sched_ms, "n1", 1);
    want.id = sf.exec_id.clone();
    want.state = ExecState::Running;
    want.start_ms = Some(sf.start_ms);
    want.epoch = sf.epoch;
    assert_eq!(running, want);
    assert!(sf.start_ms >= sf.sched_ms - 1000, "{sf:?}");
    // Asked again by the incarnation that started it (its first reply lost): the same run, to
    // resume, with its start deadline (a first attempt: its handler has not begun in this process).
    let Start::Resume(again) = s.start(&fire, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("resumed")
    };
    assert!(again.deadline_ms.is_some(), "{again:?}");
    assert_eq!(StartedFire { deadline_ms: None, ..*again }, *sf);
    // Only the live owner may retry; each retry is recorded on the fire.
    assert_eq!(s.retry_attempt(&fire, "n1", "i1", "retry-1").await.expect("retry"), Some(2));
    assert_eq!(s.retry_attempt(&fire, "n1", "stale-inc", "retry-x").await.expect("retry"), None);
    assert_eq!(s.retry_attempt(&fire, "n2", "i2", "retry-y").await.expect("retry"), None);
    let mut e = Execution::pending("f", fire.clone(), 1000, "n1", 1);
    e.id = sf.exec_id.clone();
    e.state = ExecState::Succeeded;
    assert_eq!(s.finish(&e, "n1", "i1", Keep::DEFAULT, false).await.expect("finish"), Finish::Recorded);
    assert_eq!(s.node_fires("n1").await.expect("lists"), (vec![], vec![]), "acked");
    assert_eq!(s.get_execution(&e.id).await.expect("get").map(|e| e.state), Some(ExecState::Succeeded));
    // The same finish again (its first reply lost): recorded already, no `superseded` evidence made.
    assert_eq!(s.finish(&e, "n1", "i1", Keep::DEFAULT, false).await.expect("finish again"), Finish::Recorded);
    assert_eq!(s.get_execution(&e.superseded().id).await.expect("get"), None);
    // The lock went with the finish: the next fire of the forbid job is claimed, not skipped.
    let c = claim("f", sf.sched_ms + 1000, Some(sf.sched_ms + 2000), true);
    assert_eq!(s.claim(&fence, &[c]).await.expect("claim"), vec![ClaimOutcome::Claimed]);
}

/// The execution `exec` as CancelExecution hands it to the store: closed `cancelled`, saying who.
/// The newest execution recorded of `fire`.
async fn newest_record(s: &dyn Store, fire: &str) -> Execution {
    let job = Some(rota::execution::job_of_fire(fire).to_string());
    let filter = ExecFilter { job_id: job, fire_id: Some(fire.to_string()), limit: 10, ..Default::default() };
    s.list_executions(&filter).await.expect("list").0.into_iter().next().expect("a record")
}

fn cancelled(exec_id: &str, fire: &str, job: &str) -> Execution {
    let mut e = Execution::pending(job, fire.to_string(), 1000, "n1", 1);
    e.id = exec_id.to_string();
    e.close(ExecState::Cancelled, "cancelled by ops: wrong day");
    e
}

/// CancelExecution in the store (PROTOCOL §3.19): a fire not yet begun (dispatching, queued) ends
/// `cancelled` at once, its no-overlap lock freed, and its queue entry is dropped by the next start
/// (nothing runs); a running one is left to its node, with a stop request on that node's list
/// (taken once); an ended execution, another attempt's id and an unknown fire change nothing.
async fn cancel_takes_out_what_has_not_begun_and_asks_the_node_of_what_runs(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    // Dispatching, of a forbid job (it holds the lock): cancelled, the lock freed.
    let f1 = claimed_fire(&*s, &fence, "c1", 1000, true).await;
    let open = newest_record(&*s, &f1).await;
    assert_eq!(open.state, ExecState::Pending);
    let c = cancelled(&open.id, &f1, "c1");
    assert_eq!(s.cancel(&c, false).await.expect("cancel"), Cancel::Cancelled);
    let got = s.get_execution(&open.id).await.expect("get").expect("record");
    assert_eq!(
        (got.state, got.error.as_str(), got.start_ms),
        (ExecState::Cancelled, "cancelled by ops: wrong day", None)
    );
    assert!(got.end_ms.is_some(), "{got:?}");
    // Out of the watch set and of the open executions.
    assert!(!s.stuck_dispatching(now_ms() + 86_400_000, 1000).await.expect("stuck").contains(&f1));
    let open_ones = ExecFilter { state: Some(ExecState::Pending), limit: 1000, ..Default::default() };
    let (pending, _) = s.list_executions(&open_ones).await.expect("list");
    assert!(pending.iter().all(|e| e.id != open.id), "{pending:?}");
    // Again (its first reply lost): it has ended, nothing changes.
    assert_eq!(s.cancel(&c, false).await.expect("again"), Cancel::NotOpen("cancelled".into()));
    // An accept in flight (a SubmitTask) finds it taken.
    assert_eq!(s.take_only(&f1, Some(epoch_of(&fence)), "n1", "i1").await.expect("accept"), Accept::Taken);
    // The lock went with it: the job's next fire is claimed, not skipped.
    let sched = fire_sched(&f1);
    let next = claim("c1", sched + 1000, Some(sched + 2000), true);
    assert_eq!(s.claim(&fence, &[next]).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    // Queued: cancelled, and out of its node's queue (nothing to take, nothing to steal past).
    let f2 = claimed_fire(&*s, &fence, "c2", 1000, false).await;
    assert_eq!(s.enqueue(&fence, &f2, "n1").await.expect("enqueue"), Enqueue::Queued);
    let open = newest_record(&*s, &f2).await;
    assert_eq!(s.cancel(&cancelled(&open.id, &f2, "c2"), false).await.expect("cancel"), Cancel::Cancelled);
    assert_eq!(s.node_fires("n1").await.expect("lists"), (vec![], vec![]), "out of the queue");
    assert_eq!(s.get_execution(&open.id).await.expect("get").map(|e| e.state), Some(ExecState::Cancelled));
    // Taken (accepted) but not started: cancelled; its owner's start drops the entry (nothing runs).
    let f2b = claimed_fire(&*s, &fence, "c2b", 1000, false).await;
    assert_eq!(s.take_only(&f2b, Some(epoch_of(&fence)), "n1", "i1").await.expect("take"), Accept::Accepted);
    let open = newest_record(&*s, &f2b).await;
    assert_eq!(s.cancel(&cancelled(&open.id, &f2b, "c2b"), false).await.expect("cancel"), Cancel::Cancelled);
    assert_eq!(
        s.start(&f2b, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start"),
        Start::NotMine(FireState::Cancelled)
    );
    assert_eq!(s.node_fires("n1").await.expect("lists"), (vec![], vec![]), "dropped");
    // Running: left to its node, which finds a stop request on its list, once.
    let f3 = claimed_fire(&*s, &fence, "c3", 1000, false).await;
    assert_eq!(s.enqueue(&fence, &f3, "n1").await.expect("enqueue"), Enqueue::Queued);
    assert_eq!(s.take_queued("n1", Priority::ALL).await.expect("pop").map(|t| t.fire_id), Some(f3.clone()));
    let Start::Run(sf) = s.start(&f3, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("not started")
    };
    let c = cancelled(&sf.exec_id, &f3, "c3");
    // A retry's cancel (the asked attempt ended, announcing it) stops only a fire its node holds.
    assert_eq!(s.cancel(&c, true).await.expect("retry"), Cancel::Running { node: "n1".into() });
    assert_eq!(s.take_stops("n1").await.expect("stops").len(), 1);
    assert_eq!(s.cancel(&c, false).await.expect("cancel"), Cancel::Running { node: "n1".into() });
    assert_eq!(s.get_execution(&sf.exec_id).await.expect("get").map(|e| e.state), Some(ExecState::Running));
    let want = StopRequest { fire: f3.clone(), exec: sf.exec_id.clone(), why: c.error.clone() };
    assert_eq!(s.take_stops("n1").await.expect("stops"), vec![want]);
    assert_eq!(s.take_stops("n1").await.expect("stops"), vec![], "taken once");
    // Its node ends it `cancelled` through its finish.
    let mut end = c.clone();
    end.start_ms = Some(sf.start_ms);
    assert_eq!(s.finish(&end, "n1", "i1", Keep::DEFAULT, false).await.expect("finish"), Finish::Recorded);
    assert_eq!(s.get_execution(&sf.exec_id).await.expect("get").map(|e| e.state), Some(ExecState::Cancelled));
    assert_eq!(s.cancel(&c, false).await.expect("ended"), Cancel::NotOpen("cancelled".into()));
    // Not the fire's current execution, or no such fire.
    let f4 = claimed_fire(&*s, &fence, "c4", 1000, false).await;
    let current = newest_record(&*s, &f4).await;
    assert_eq!(
        s.cancel(&cancelled(&current.id, &f4, "c4"), true).await.expect("retry"),
        Cancel::NotOpen("dispatching".into()),
        "a retry's cancel never takes out a fire that waits for a node"
    );
    let other = rota::execution::new_execution_id(&f4);
    assert_eq!(
        s.cancel(&cancelled(&other, &f4, "c4"), false).await.expect("other"),
        Cancel::NotOpen("dispatching".into())
    );
    assert_eq!(newest_record(&*s, &f4).await.state, ExecState::Pending, "untouched");
    let nowhere = "c5@1000".to_string();
    let id = rota::execution::new_execution_id(&nowhere);
    assert_eq!(s.cancel(&cancelled(&id, &nowhere, "c5"), false).await.expect("unknown"), Cancel::Unknown);
}

/// A manual fire's own arguments (TriggerJob's) are kept with it: its take returns them; the same
/// idempotency key with other arguments is a conflict, with the same ones a repeat.
async fn a_manual_fires_own_arguments_go_with_it(s: Arc<dyn Store>) {
    put(&*s, "t", 9_000_000_000_000).await;
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let args = serde_json::json!({"region": "eu", "n": 2});
    let e = manual("t");
    assert_eq!(
        s.trigger(&e, Some("k"), Concurrency::Allow, 1000, &FireOwn::with_args(args.clone()), Priority::Normal)
            .await
            .expect("t"),
        TriggerOutcome::Created(e.clone())
    );
    let other = serde_json::json!({"region": "us"});
    assert_eq!(
        s.trigger(
            &manual("t"),
            Some("k"),
            Concurrency::Allow,
            1000,
            &FireOwn::with_args(other.clone()),
            Priority::Normal
        )
        .await
        .expect("t"),
        TriggerOutcome::Conflict(e.id.clone())
    );
    assert_eq!(
        s.trigger(&manual("t"), Some("k"), Concurrency::Allow, 1000, &FireOwn::default(), Priority::Normal)
            .await
            .expect("t"),
        TriggerOutcome::Conflict(e.id.clone()),
        "none is other arguments too"
    );
    assert!(matches!(
        s.trigger(
            &manual("t"),
            Some("k"),
            Concurrency::Allow,
            1000,
            &FireOwn::with_args(args.clone()),
            Priority::Normal
        )
        .await
        .expect("t"),
        TriggerOutcome::Deduplicated(_)
    ));
    let Accept::Started(sf) = s.accept(&e.fire_id, None, "n1", "i1").await.expect("accept") else {
        panic!("not started")
    };
    assert_eq!(sf.args, Some(args));
    // A fire without arguments of its own runs its job's.
    let plain = manual("t");
    assert!(matches!(
        s.trigger(&plain, None, Concurrency::Allow, 1000, &FireOwn::default(), Priority::Normal).await.expect("t"),
        TriggerOutcome::Created(_)
    ));
    let Accept::Started(sf) = s.accept(&plain.fire_id, None, "n1", "i1").await.expect("accept") else {
        panic!("not started")
    };
    assert_eq!(sf.args, None);
    assert!(sf.selector.is_empty());
    // Target tags go with the fire too: returned by its accept, and by a start after a hand-over.
    let tagged = manual("t");
    let own = FireOwn { args: None, selector: [("region".to_string(), "us".to_string())].into() };
    assert!(matches!(
        s.trigger(&tagged, None, Concurrency::Allow, 1000, &own, Priority::Normal).await.expect("t"),
        TriggerOutcome::Created(_)
    ));
    let Accept::Started(sf) = s.accept(&tagged.fire_id, None, "n1", "i1").await.expect("accept") else {
        panic!("not started")
    };
    assert_eq!(sf.selector, own.selector);
    // Taken by a start (the path of a fire handed over or re-run): the same tags.
    let queued = manual("t");
    assert!(matches!(
        s.trigger(&queued, None, Concurrency::Allow, 1000, &own, Priority::Normal).await.expect("t"),
        TriggerOutcome::Created(_)
    ));
    assert_eq!(s.take_only(&queued.fire_id, None, "n1", "i1").await.expect("take"), Accept::Accepted);
    match s.start(&queued.fire_id, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") {
        Start::Run(sf) => assert_eq!(sf.selector, own.selector),
        other => panic!("not started: {other:?}"),
    }
}

/// The instant of a scheduled fire id.
fn fire_sched(fire: &str) -> i64 {
    rota::execution::fire_due_ms(fire).expect("a scheduled fire")
}

/// A fire started ahead of its instant (a worker's start lead) records its instant as its start:
/// its handler begins then, and the record, read while it runs, says so (never a start before the
/// fire's own time).
async fn a_fire_started_ahead_of_its_instant_begins_at_it(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let epoch = epoch_of(&fence);
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let sched = now_ms() / 1000 * 1000 + 5000;
    put(&*s, "ahead", sched).await;
    let c = claim("ahead", sched, Some(sched + 1000), false);
    assert_eq!(s.claim(&fence, std::slice::from_ref(&c)).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    let fire = c.exec.fire_id.clone();
    assert_eq!(s.take_only(&fire, Some(epoch), "n1", "i1").await.expect("accept"), Accept::Accepted);
    let Start::Run(sf) = s.start(&fire, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("{fire} not started")
    };
    assert_eq!(sf.start_ms, sched, "started ahead, it begins at its instant");
    let read = s.get_execution(&sf.exec_id).await.expect("get").expect("record");
    assert_eq!((read.state, read.start_ms), (ExecState::Running, Some(sched)));
    // A fire started late starts when it is started.
    let late = now_ms() / 1000 * 1000 - 3000;
    put(&*s, "late", late).await;
    let c = claim("late", late, Some(late + 1000), false);
    assert_eq!(s.claim(&fence, std::slice::from_ref(&c)).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    let fire = c.exec.fire_id.clone();
    assert_eq!(s.take_only(&fire, Some(epoch), "n1", "i1").await.expect("accept"), Accept::Accepted);
    let before = now_ms();
    let Start::Run(sf) = s.start(&fire, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("{fire} not started")
    };
    assert!(sf.start_ms >= before - 20 && sf.start_ms <= now_ms() + 20, "{sf:?} started at {before}");
}

/// A keep-alive extends a heartbeat only while it holds the incarnation: never one replaced, nor
/// one that expired (taking that back is the beat's, which checks the reaper's burial).
async fn a_keep_alive_never_takes_a_heartbeat_back(s: Arc<dyn Store>) {
    s.register(&node("n1", "i1"), 1000, None).await.expect("register");
    assert!(s.keep_alive("n1", "i1", 1000).await.expect("keep alive"), "its own live incarnation");
    assert!(!s.keep_alive("n1", "other", 1000).await.expect("keep alive"), "another incarnation");
    assert!(!s.keep_alive("n9", "i1", 1000).await.expect("keep alive"), "a node never registered");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(s.keep_alive("n1", "i1", 1000).await.expect("keep alive"), "still live, and extended");
    tokio::time::sleep(Duration::from_millis(1400)).await;
    assert!(!s.keep_alive("n1", "i1", 1000).await.expect("keep alive"), "expired: not taken back");
}

/// An idempotency key outlives the record it made when the job's history cap deletes that record:
/// the same key then triggers nothing again (`Spent`, with the execution id), never a second run.
async fn an_idempotency_key_outlives_its_trimmed_record(s: Arc<dyn Store>) {
    let epoch = epoch_of(&master(&*s).await);
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    put(&*s, "t", 9_000_000_000_000).await;
    let mk = || manual("t");
    let first = mk();
    let mut fires = vec![first.clone()];
    assert!(matches!(
        s.trigger(&first, Some("k1"), Concurrency::Allow, 1000, &FireOwn::default(), Priority::Normal)
            .await
            .expect("t"),
        TriggerOutcome::Created(_)
    ));
    for _ in 0..3 {
        let e = mk();
        assert!(matches!(
            s.trigger(&e, None, Concurrency::Allow, 1000, &FireOwn::default(), Priority::Normal).await.expect("t"),
            TriggerOutcome::Created(_)
        ));
        fires.push(e);
    }
    for e in &fires {
        assert_eq!(s.take_only(&e.fire_id, Some(epoch), "n1", "i1").await.expect("accept"), Accept::Accepted);
        let Start::Run(sf) = s.start(&e.fire_id, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
            panic!("not started")
        };
        let mut done = e.clone();
        done.id = sf.exec_id;
        done.state = ExecState::Succeeded;
        let keep = Keep { last: 1, failed: 0 };
        assert_eq!(s.finish(&done, "n1", "i1", keep, false).await.expect("finish"), Finish::Recorded);
    }
    assert_eq!(s.get_execution(&first.id).await.expect("get"), None, "trimmed");
    assert_eq!(
        s.trigger(&mk(), Some("k1"), Concurrency::Allow, 1000, &FireOwn::default(), Priority::Normal)
            .await
            .expect("trigger"),
        TriggerOutcome::Spent(first.id.clone())
    );
}

/// A fire of `job` at `sched` claimed, accepted and started on n1 (incarnation i1): its execution,
/// for the caller to finish.
async fn running(s: &dyn Store, fence: &Fence, epoch: u64, job: &str, sched: i64) -> Execution {
    run_claim(s, fence, epoch, claim(job, sched, Some(sched + 1000), false)).await
}

/// `c` claimed, accepted and started by n1 (incarnation i1): its running execution.
async fn run_claim(s: &dyn Store, fence: &Fence, epoch: u64, c: Claim) -> Execution {
    let (job, sched) = (c.job_id.clone(), c.sched_ms);
    let job = job.as_str();
    assert_eq!(s.claim(fence, std::slice::from_ref(&c)).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    let fire = c.exec.fire_id.clone();
    assert_eq!(s.take_only(&fire, Some(epoch), "n1", "i1").await.expect("accept"), Accept::Accepted);
    let Start::Run(sf) = s.start(&fire, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("{fire} not started")
    };
    let mut e = Execution::pending(job, fire, sched, "n1", 1);
    e.id = sf.exec_id;
    e
}

/// A job's history is trimmed to its caps when a run finishes: the newest `last` runs whatever their
/// outcome, and the newest `failed` older failures besides; an open run is never deleted; what goes
/// is gone from every listing and from GetExecution.
async fn a_jobs_history_keeps_its_newest_runs_and_failures_longer(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let epoch = epoch_of(&fence);
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let keep = Keep { last: 3, failed: 2 };
    let base = now_ms() / 1000 * 1000 - 20_000;
    put(&*s, "h", base).await;
    // Fire 0 stays running; 1 fails, 2 times out, 3 fails, the rest succeed.
    let outcome = |i: i64| match i {
        1 | 3 => ExecState::Failed,
        2 => ExecState::TimedOut,
        _ => ExecState::Succeeded,
    };
    let mut ids = Vec::new();
    for i in 0..11 {
        let mut e = running(&*s, &fence, epoch, "h", base + i * 1000).await;
        ids.push(e.id.clone());
        if i == 0 {
            continue;
        }
        e.state = outcome(i);
        assert_eq!(s.finish(&e, "n1", "i1", keep, false).await.expect("finish"), Finish::Recorded);
    }
    let listed = |job: Option<&str>| {
        let f = ExecFilter { job_id: job.map(str::to_string), limit: 100, ..Default::default() };
        let s = Arc::clone(&s);
        async move { s.list_executions(&f).await.expect("list").0.into_iter().map(|e| e.id).collect::<Vec<_>>() }
    };
    // The newest three (8, 9, 10), the two newest older failures (2, 3) and the running one (0).
    let want: Vec<String> = [10, 9, 8, 3, 2, 0].iter().map(|&i| ids[i].clone()).collect();
    assert_eq!(listed(Some("h")).await, want, "the job's history");
    assert_eq!(listed(None).await, want, "every execution");
    for gone in [1, 4, 5, 6, 7] {
        assert_eq!(s.get_execution(&ids[gone]).await.expect("get"), None, "fire {gone}'s record is deleted");
    }
    assert_eq!(s.get_execution(&ids[0]).await.expect("get").map(|e| e.state), Some(ExecState::Running));
    // A page boundary inside the failures: pages join up.
    let f = ExecFilter { job_id: Some("h".into()), limit: 4, ..Default::default() };
    let (p1, next) = s.list_executions(&f).await.expect("list");
    let (p2, _) = s.list_executions(&ExecFilter { before: next, ..f }).await.expect("list");
    let paged: Vec<String> = p1.into_iter().chain(p2).map(|e| e.id).collect();
    assert_eq!(paged, want, "paged");
    // A long run finishing after newer fires of its job (a forbid job's skips, say): its own record,
    // the oldest, is not deleted by the trim its finish does.
    put(&*s, "g", base).await;
    let keep = Keep { last: 1, failed: 0 };
    let mut started = Vec::new();
    for i in 0..4 {
        let mut e = running(&*s, &fence, epoch, "g", base + i * 1000).await;
        e.state = ExecState::Succeeded;
        started.push(e);
    }
    for e in started[1..].iter().chain(std::iter::once(&started[0])) {
        assert_eq!(s.finish(e, "n1", "i1", keep, false).await.expect("finish"), Finish::Recorded);
    }
    let long = s.get_execution(&started[0].id).await.expect("get").map(|e| e.state);
    assert_eq!(long, Some(ExecState::Succeeded), "the long run's own record is kept");
    // A fire waiting for its retry (its failed attempt recorded apart, the fire still running) is
    // not deleted with that record by the trims of newer runs: its retry goes on.
    let waiting = running(&*s, &fence, epoch, "g", base + 4000).await;
    let mut failed = waiting.clone();
    failed.close(ExecState::Failed, "first try");
    failed.next_attempt_ms = Some(now_ms());
    s.finish_execution(&failed, false).await.expect("the failed attempt");
    for i in 5..8 {
        let mut e = running(&*s, &fence, epoch, "g", base + i * 1000).await;
        e.state = ExecState::Succeeded;
        assert_eq!(s.finish(&e, "n1", "i1", keep, false).await.expect("finish"), Finish::Recorded);
    }
    let retry = Execution::pending("g", waiting.fire_id.clone(), waiting.scheduled_ms, "n1", 2);
    assert_eq!(s.retry_attempt(&waiting.fire_id, "n1", "i1", &retry.id).await.expect("retry"), Some(2));
}

async fn a_dead_nodes_work_moves_and_late_results_are_superseded(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let epoch = epoch_of(&fence);
    s.register(&node("n1", "i1"), 300, None).await.expect("register");
    s.register(&node("n2", "i2"), 60_000, None).await.expect("register");
    // n1 holds: one fire queued (never started) and one running.
    let queued = claimed_fire(&*s, &fence, "q", 1000, false).await;
    let running = claimed_fire(&*s, &fence, "r", 1000, false).await;
    let lost = claimed_fire(&*s, &fence, "l", 1000, false).await;
    assert_eq!(s.enqueue(&fence, &queued, "n1").await.expect("enqueue"), Enqueue::Queued);
    for f in [&running, &lost] {
        assert_eq!(s.take_only(f, Some(epoch), "n1", "i1").await.expect("accept"), Accept::Accepted);
        assert!(matches!(s.start(f, "n1", "i1", "x", MasterOnly::Anyway).await.expect("start"), Start::Run(_)));
    }
    let reap = |list, fire: &str, rerun| ReapRequest {
        by: ReapBy::Master(fence.clone()),
        dead_node: "n1".into(),
        fires: list,
        fire_id: fire.to_string(),
        target: "n2".into(),
        rerun,
        max_recoveries: Some(2),
        lock_ttl_ms: 60_000,
    };
    assert_eq!(s.reap(&reap(NodeFires::Queued, &queued, false)).await.expect("reap"), Reap::Alive, "n1 is still alive");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.dead_nodes().await.expect("dead"), vec!["n1".to_string()]);
    assert_eq!(s.reap(&reap(NodeFires::Queued, &queued, false)).await.expect("reap"), Reap::Moved);
    assert_eq!(s.reap(&reap(NodeFires::Queued, &queued, false)).await.expect("reap"), Reap::Gone, "handled once");
    let Reap::Rerun { dead_exec_id, dead } = s.reap(&reap(NodeFires::Taken, &running, true)).await.expect("reap")
    else {
        panic!("a running fire of a dead node is re-run")
    };
    assert!(!dead_exec_id.is_empty(), "the dead attempt is named, so it can be recorded lost");
    // And described: the fire hash that was its record is the re-run's once that starts.
    let sched = rota::execution::fire_due_ms(&running);
    assert_eq!((dead.job_id.as_str(), Some(dead.sched_ms), dead.attempt), ("r", sched, 1));
    assert!(dead.started_ms.is_some(), "{dead:?}");
    assert!(matches!(s.reap(&reap(NodeFires::Taken, &lost, false)).await.expect("reap"), Reap::Lost { .. }));
    let (q, p) = s.node_fires("n2").await.expect("lists");
    assert_eq!((q.len(), p.len()), (2, 0));
    assert!(q.contains(&queued) && q.contains(&running));
    // n2 runs the re-run as attempt 2; n1's late result is superseded, not the outcome.
    assert_eq!(
        s.take_queued("n2", Priority::ALL).await.expect("pop").map(|t| t.fire_id).as_deref(),
        Some(queued.as_str())
    );
    assert_eq!(
        s.take_queued("n2", Priority::ALL).await.expect("pop").map(|t| t.fire_id).as_deref(),
        Some(running.as_str())
    );
    let Start::Run(sf) = s.start(&running, "n2", "i2", "rerun-exec", MasterOnly::Anyway).await.expect("start") else {
        panic!()
    };
    assert_eq!((sf.attempt, sf.exec_id.as_str()), (2, "rerun-exec"));
    let mut late = Execution::pending("r", running.clone(), 1000, "n1", 1);
    late.state = ExecState::Succeeded;
    assert_eq!(s.finish(&late, "n1", "i1", Keep::DEFAULT, false).await.expect("finish"), Finish::Superseded);
    // The late result is kept as evidence under its own id; the fire's records are untouched.
    assert_eq!(s.get_execution(&late.id).await.expect("get"), None);
    let (evidence, _) = s
        .list_executions(&ExecFilter { state: Some(ExecState::Superseded), limit: 10, ..Default::default() })
        .await
        .expect("list");
    assert_eq!(evidence.len(), 1);
    assert!(evidence[0].error.contains(&late.id), "{}", evidence[0].error);
    let mut done = Execution::pending("r", running.clone(), 1000, "n2", 2);
    done.id = sf.exec_id;
    done.state = ExecState::Succeeded;
    assert_eq!(s.finish(&done, "n2", "i2", Keep::DEFAULT, false).await.expect("finish"), Finish::Recorded);
    // A deposed master cannot reap.
    let mut stale = reap(NodeFires::Queued, &queued, false);
    stale.by = ReapBy::Master(lease_value("n9:1:x"));
    assert_eq!(s.reap(&stale).await.expect("reap"), Reap::Fenced);
}

/// Found by the chaos runner: a node paused past its heartbeat while running a fire; the master
/// re-ran the fire on another node's queue; the node woke, registered a new incarnation and took the
/// re-run over (work stealing) into its processing list; then its old run ended. That late result is
/// superseded, and its ack must leave the new incarnation's entry alone: it removed it, and the
/// re-run sat `accepted` in no list.
async fn a_late_result_leaves_a_newer_incarnations_entry_alone(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let epoch = epoch_of(&fence);
    s.register(&node("n1", "old"), 300, None).await.expect("register");
    s.register(&node("n2", "i2"), 60_000, None).await.expect("register");
    let fire = claimed_fire(&*s, &fence, "r", 1000, false).await;
    assert_eq!(s.take_only(&fire, Some(epoch), "n1", "old").await.expect("accept"), Accept::Accepted);
    assert!(matches!(s.start(&fire, "n1", "old", "x", MasterOnly::Anyway).await.expect("start"), Start::Run(_)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let req = ReapRequest {
        by: ReapBy::Master(fence.clone()),
        dead_node: "n1".into(),
        fires: NodeFires::Taken,
        fire_id: fire.clone(),
        target: "n2".into(),
        rerun: true,
        max_recoveries: Some(2),
        lock_ttl_ms: 60_000,
    };
    assert!(matches!(s.reap(&req).await.expect("reap"), Reap::Rerun { .. }));
    // n1 comes back as a new incarnation and steals the re-run from n2's queue.
    assert_eq!(s.register(&node("n1", "new"), 60_000, None).await.expect("register"), Register::Registered);
    assert_eq!(s.steal("n2", "n1", "new").await.expect("steal").as_deref(), Some(fire.as_str()));
    let mut late = Execution::pending("r", fire.clone(), 1000, "n1", 1);
    late.state = ExecState::Succeeded;
    assert_eq!(s.finish(&late, "n1", "old", Keep::DEFAULT, false).await.expect("finish"), Finish::Superseded);
    assert_eq!(s.node_fires("n1").await.expect("lists").1, vec![fire.clone()], "the re-run's entry stays");
    assert!(matches!(s.start(&fire, "n1", "new", "rerun", MasterOnly::Anyway).await.expect("start"), Start::Run(_)));
}

/// A node handing a started fire whose handler has not begun to a node that can run it (or to the
/// master) spends none of the fire's recoveries: those bound re-runs after deaths. A handed fire
/// whose next node then dies is still re-run with `max_recoveries = 1`.
async fn a_hand_over_spends_no_recovery(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let epoch = epoch_of(&fence);
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    s.register(&node("n2", "i2"), 300, None).await.expect("register");
    s.register(&node("n3", "i3"), 60_000, None).await.expect("register");
    let fire = claimed_fire(&*s, &fence, "h", 1000, false).await;
    assert_eq!(s.take_only(&fire, Some(epoch), "n1", "i1").await.expect("accept"), Accept::Accepted);
    let Start::Run(first) = s.start(&fire, "n1", "i1", "x", MasterOnly::Anyway).await.expect("start") else {
        panic!("not started")
    };
    let mut req = ReapRequest {
        by: ReapBy::Handoff { incarnation: "i1".into() },
        dead_node: "n1".into(),
        fires: NodeFires::Taken,
        fire_id: fire.clone(),
        target: "n2".into(),
        rerun: true,
        max_recoveries: None,
        lock_ttl_ms: 60_000,
    };
    assert!(matches!(s.reap(&req).await.expect("hand over"), Reap::Rerun { .. }));
    // Handed over and not yet closed by n1: the first attempt's record does not read as running
    // on n2, where the fire is only queued.
    let read = s.get_execution(&first.exec_id).await.expect("get").expect("the first attempt's record");
    assert!(!(read.state == ExecState::Running && read.node_id == "n2"), "{read:?}");
    // The hand-over left its attempt to close, for the sweep should n1 never record it (its reply
    // lost): handed, not lost.
    let closing = s.closings().await.expect("closings").into_iter().find(|c| c.exec_id == first.exec_id);
    assert!(closing.as_ref().is_some_and(|c| c.handed && !c.lost && c.target == "n2"), "{closing:?}");
    assert_eq!(s.take_queued("n2", Priority::ALL).await.expect("pop").map(|t| t.fire_id).as_ref(), Some(&fire));
    assert!(matches!(s.start(&fire, "n2", "i2", "y", MasterOnly::Anyway).await.expect("start"), Start::Run(_)));
    // n2 dies running it: the master's reap spends the fire's first recovery, which is allowed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    req.by = ReapBy::Master(fence.clone());
    req.dead_node = "n2".into();
    req.target = "n3".into();
    req.max_recoveries = Some(1);
    assert!(matches!(s.reap(&req).await.expect("reap"), Reap::Rerun { .. }), "the hand-over counted no recovery");
}

async fn stuck_dispatches_are_found(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let fire = claimed_fire(&*s, &fence, "d", 1000, false).await;
    assert!(s.stuck_dispatching(now_ms(), 10).await.expect("stuck").is_empty(), "not overdue yet");
    let later = now_ms() + 60_000;
    assert_eq!(s.stuck_dispatching(later, 10).await.expect("stuck"), vec![fire]);
}

/// The listing across jobs (no job asked) is bounded, so that a retained execution costs Redis its
/// record and its job's index entry only: it shows the newest `execution_recent` executions and,
/// older than those, the open ones (pending or running) alone. Every execution stays listable by its
/// job. Both stores; `recent` 3 here.
async fn listing_across_jobs_is_the_newest_and_the_open(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let (epoch, inc) = (epoch_of(&fence), fence.incarnation.clone());
    s.register(&node("n1", &inc), 60_000, None).await.expect("register");
    let sched = now_ms() / 1000 * 1000 + 5000;
    let mut claims = Vec::new();
    for i in 0..6 {
        let job = format!("r{i}");
        put(&*s, &job, sched).await;
        let c = claim(&job, sched, Some(sched + 1000), false);
        assert_eq!(s.claim(&fence, std::slice::from_ref(&c)).await.expect("claim"), vec![ClaimOutcome::Claimed]);
        claims.push(c);
    }
    let finish = |c: &Claim| {
        let (s, inc) = (Arc::clone(&s), inc.clone());
        let fire = c.exec.fire_id.clone();
        async move {
            let Accept::Started(sf) = s.accept(&fire, Some(epoch), "n1", &inc).await.expect("accept") else {
                panic!("started")
            };
            let mut e = sf.running_record(&fire, "n1");
            e.close(ExecState::Succeeded, "");
            assert_eq!(s.finish(&e, "n1", &inc, Keep::DEFAULT, false).await.expect("finish"), Finish::Recorded);
        }
    };
    // The oldest stays open; the others end.
    for c in &claims[1..] {
        finish(c).await;
    }
    let ids = |f: ExecFilter| {
        let s = Arc::clone(&s);
        async move {
            let (page, _) = s.list_executions(&f).await.expect("list");
            page.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    let all = || ExecFilter { limit: 100, ..Default::default() };
    let id = |i: usize| claims[i].exec.id.clone();
    assert_eq!(ids(all()).await, vec![id(5), id(4), id(3), id(0)], "the newest three, and the open one");
    let open = ExecFilter { state: Some(ExecState::Pending), ..all() };
    assert_eq!(ids(open).await, vec![id(0)]);
    let by_job = ExecFilter { job_id: Some("r1".into()), ..all() };
    assert_eq!(ids(by_job).await, vec![id(1)], "an older one is listed by its job");
    finish(&claims[0]).await;
    assert_eq!(ids(all()).await, vec![id(5), id(4), id(3)], "ended, the old one leaves the listing across jobs");
}

#[tokio::test]
async fn listing_across_jobs_memory() {
    let s = MemoryStore::new(RETENTION_MS).with_recent_executions(3);
    listing_across_jobs_is_the_newest_and_the_open(Arc::new(s)).await;
}

#[tokio::test]
async fn listing_across_jobs_redis() {
    let server = RedisServer::start();
    let s = RedisStore::connect(&server.url(), "rota", "test", RETENTION_MS).await.expect("connect");
    listing_across_jobs_is_the_newest_and_the_open(Arc::new(s.with_recent_executions(3))).await;
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(std::sync::Arc::new(super::MemoryStore::new(super::RETENTION_MS))).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let server = super::RedisServer::start();
                    let store = super::RedisStore::connect(&server.url(), "rota", "test", super::RETENTION_MS)
                        .await
                        .expect("connect");
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

conformance!(
    claim_is_once_per_fire,
    watermark_never_moves_back,
    due_index_orders_and_respects_pause,
    delete_stops_claims,
    list_jobs_in_id_order_with_paging,
    forbid_lock_skips_overlap_until_released,
    misfire_and_duplicate_claims_advance_the_watermark,
    trigger_is_idempotent_by_key,
    executions_list_newest_first_with_filters_and_pages,
    watchers_see_every_change,
    nodes_table,
    lease_is_exclusive_fenced_and_monotonic,
    accept_and_enqueue_are_exclusive,
    a_claim_here_goes_into_the_claimers_hands,
    a_fire_taken_ahead_starts_in_the_same_step,
    a_failover_fire_is_stolen_only_by_a_node_of_its_list,
    queue_pop_start_finish,
    a_dead_nodes_work_moves_and_late_results_are_superseded,
    stuck_dispatches_are_found,
    a_terminal_record_is_never_reopened,
    a_master_only_fire_is_not_started_off_the_master,
    a_reaped_incarnation_never_comes_back,
    a_late_result_leaves_a_newer_incarnations_entry_alone,
    a_hand_over_spends_no_recovery,
    a_jobs_history_keeps_its_newest_runs_and_failures_longer,
    an_idempotency_key_outlives_its_trimmed_record,
    a_fire_started_ahead_of_its_instant_begins_at_it,
    a_keep_alive_never_takes_a_heartbeat_back,
    cancel_takes_out_what_has_not_begun_and_asks_the_node_of_what_runs,
    a_manual_fires_own_arguments_go_with_it,
    overlap_policies_hold_fires_and_hand_the_lock_on,
    limit_slots_are_all_or_none_leased_and_given_back,
    a_nodes_queue_is_taken_by_priority,
    a_fires_shards_are_claimed_together_once,
    a_jobs_fires_are_counted_by_their_claims_and_max_fires_holds_it_completed,
    a_pause_keeps_its_note_and_its_until_makes_it_resumable,
    a_jobs_failed_fires_in_a_row_are_counted_until_a_success_or_a_resume,
    an_after_previous_job_waits_for_its_fires_end,
    a_completed_one_shot_is_deleted_after_the_retention_unless_kept,
    calendars_are_kept_named_and_deleted_only_when_no_job_names_them,
);

/// Calendars (issue 16): put, listed, read by name; a job naming one that is missing, or marked
/// for deletion, is refused and nothing is written; a put ends a mark; dropped, it is gone. A
/// claim that moves the watermark (a calendar's omit or forward) makes no fire and counts none.
async fn calendars_are_kept_named_and_deleted_only_when_no_job_names_them(s: Arc<dyn Store>) {
    use rota::job::calendar::CalendarDef;
    let fence = master(&*s).await;
    let def = |name: &str| CalendarDef {
        name: name.into(),
        excluded_dates: vec!["2026-12-25".into()],
        excluded_windows: vec!["sat,sun".into()],
        ..Default::default()
    };
    s.put_calendar(&def("holidays")).await.expect("put");
    s.put_calendar(&def("weekends")).await.expect("put");
    s.put_calendar(&CalendarDef { description: "again".into(), ..def("weekends") }).await.expect("replace");
    let listed = s.list_calendars().await.expect("list");
    assert_eq!(listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["holidays", "weekends"]);
    assert_eq!(listed[1].description, "again");
    let got = s.calendars(&["weekends".into(), "nope".into()]).await.expect("read");
    assert_eq!(got.keys().collect::<Vec<_>>(), ["weekends"]);

    let at = now_ms() / 1000 * 1000 + 60_000;
    let named =
        |id: &str, cals: &[&str]| JobSpec { calendars: cals.iter().map(|c| c.to_string()).collect(), ..spec(id) };
    let e = s.write_job(&api_write(&named("j1", &["holidays", "nope"]), Some(at))).await.expect_err("missing");
    assert!(e.to_string().starts_with("calendars[1]: no calendar 'nope'"), "{e}");
    assert!(s.get_job("j1").await.expect("get").is_none(), "nothing written");
    assert!(matches!(
        s.write_job(&api_write(&named("j1", &["holidays"]), Some(at))).await.expect("put"),
        WatermarkWrite::Done { .. }
    ));
    // A delete's mark: no job may name it from then on; a put of the calendar ends the mark.
    assert!(s.mark_calendar_deleted("weekends").await.expect("mark"));
    assert!(!s.mark_calendar_deleted("nope").await.expect("mark"));
    let e = s.write_job(&api_write(&named("j2", &["weekends"]), Some(at))).await.expect_err("marked");
    assert!(e.to_string().starts_with("calendars[0]: calendar 'weekends' is being deleted"), "{e}");
    s.unmark_calendar_deleted("weekends").await.expect("unmark");
    s.write_job(&api_write(&named("j2", &["weekends"]), Some(at))).await.expect("put after the unmark");
    assert!(s.mark_calendar_deleted("holidays").await.expect("mark"));
    s.put_calendar(&def("holidays")).await.expect("put again");
    s.write_job(&api_write(&named("j3", &["holidays"]), Some(at))).await.expect("the put ended the mark");
    // Dropped only while marked: a put since the mark keeps it.
    assert!(!s.drop_calendar("holidays").await.expect("drop"), "not marked: kept");
    assert!(s.mark_calendar_deleted("holidays").await.expect("mark"));
    assert!(s.drop_calendar("holidays").await.expect("drop"));
    assert!(s.calendars(&["holidays".into()]).await.expect("read").is_empty());
    assert!(!s.mark_calendar_deleted("holidays").await.expect("gone"));

    // A move: the watermark goes on, no fire hash, no count toward max_fires.
    let c = Claim { moves: true, ..claim("j2", at, Some(at + 5_000), false) };
    assert_eq!(s.claim(&fence, &[c]).await.expect("claim"), vec![ClaimOutcome::Moved]);
    let rec = s.get_job("j2").await.expect("get").expect("exists");
    assert_eq!((rec.next_ms, rec.fired), (Some(at + 5_000), 0));
    let of_j2 = ExecFilter { job_id: Some("j2".into()), limit: 10, ..Default::default() };
    assert!(s.list_executions(&of_j2).await.expect("list").0.is_empty(), "no fire made");
    // The instant it moved to is claimed as usual.
    assert_eq!(
        s.claim(&fence, &[claim("j2", at + 5_000, Some(at + 10_000), false)]).await.expect("claim"),
        vec![ClaimOutcome::Claimed]
    );
    assert_eq!(s.get_job("j2").await.expect("get").expect("exists").fired, 1);
}

/// A one-shot (`at`) that made its fire is completed; once the retention has passed since, it is
/// deleted (its job gone, its fire ids forgotten by no one: its records keep their own retention),
/// unless kept (`keep_completed`), put again with an instant to come, or paused. Other kinds that
/// completed (an end_time) stay.
async fn a_completed_one_shot_is_deleted_after_the_retention_unless_kept(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let at = now_ms() / 1000 * 1000 + 60_000;
    let shot =
        |id: &str, keep: bool| JobSpec { cron: String::new(), at_ms: vec![at], keep_completed: keep, ..spec(id) };
    for (id, keep) in [("once", false), ("kept", true), ("again", false), ("held", false)] {
        match s.write_job(&api_write(&shot(id, keep), Some(at))).await.expect("put") {
            WatermarkWrite::Done { .. } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(s.claim(&fence, &[claim(id, at, None, false)]).await.expect("claim"), vec![ClaimOutcome::Claimed]);
        assert!(s.get_job(id).await.expect("get").expect("exists").completed());
    }
    // A cron job whose end passed: completed, never deleted by this.
    put(&*s, "ended", at).await;
    assert_eq!(s.claim(&fence, &[claim("ended", at, None, false)]).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    // "again" is put again with an instant still to come; "held" is paused.
    let later = JobSpec { at_ms: vec![at + 60_000], ..shot("again", false) };
    s.write_job(&api_write(&later, Some(at + 60_000))).await.expect("put");
    s.set_paused("held", true, None, now_ms(), None).await.expect("pause");
    // Not yet: the retention has not passed.
    assert!(s.expire_completed(now_ms(), 100).await.expect("expire").is_empty());
    let past = now_ms() + RETENTION_MS as i64 + 1000;
    assert_eq!(s.expire_completed(past, 100).await.expect("expire"), vec!["once".to_string()]);
    assert!(s.get_job("once").await.expect("get").is_none(), "deleted");
    for id in ["kept", "again", "held", "ended"] {
        assert!(s.get_job(id).await.expect("get").is_some(), "{id} stays");
    }
    assert!(s.expire_completed(past, 100).await.expect("expire").is_empty(), "once");
}

/// `after_previous` (issue 16): a chained claim leaves the job without a watermark, waiting on its
/// fire (in the chain index); `chain_next` answers Open until the fire has ended, then sets the next
/// fire to its recorded end plus the delay, once (a second call finds nothing to do); a re-put
/// keeps the job waiting, a put as another kind ends the wait, a delete drops it, and an end past
/// the job's end_time completes it.
async fn an_after_previous_job_waits_for_its_fires_end(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    let epoch = epoch_of(&fence);
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let base = now_ms() / 1000 * 1000 - 60_000;
    let chained = JobSpec { cron: String::new(), after_previous_ms: 5_000, ..spec("c") };
    let write = |spec: &JobSpec, next: i64| {
        let (s, spec) = (Arc::clone(&s), spec.clone());
        async move {
            match s.write_job(&api_write(&spec, Some(next))).await.expect("put") {
                WatermarkWrite::Done { record, .. } => *record,
                other => panic!("{other:?}"),
            }
        }
    };
    write(&chained, base).await;
    let chain_claim = |sched: i64| Claim { chain: true, ..claim("c", sched, None, false) };
    let mut e = run_claim(&*s, &fence, epoch, chain_claim(base)).await;
    let rec = s.get_job("c").await.expect("get").expect("exists");
    assert_eq!((rec.next_ms, rec.chain_ms, rec.completed()), (None, Some(base), false));
    assert_eq!(s.chained(10).await.expect("chained"), vec![("c".to_string(), base)]);
    let wait = [("c".to_string(), base)];
    assert_eq!(s.chain_next(&wait, now_ms()).await.expect("chain"), vec![Chained::Open], "still running");
    // A re-put while it runs: still waiting, no watermark beside the running fire.
    let rec = write(&chained, now_ms() + 1000).await;
    assert_eq!((rec.next_ms, rec.chain_ms), (None, Some(base)));
    e.state = ExecState::Succeeded;
    e.start_ms = Some(base);
    e.end_ms = Some(base + 1_500);
    assert_eq!(s.finish(&e, "n1", "i1", Keep::DEFAULT, false).await.expect("finish"), Finish::Recorded);
    let next = base + 1_500 + 5_000;
    assert_eq!(s.chain_next(&wait, now_ms()).await.expect("chain"), vec![Chained::Next(Some(next))]);
    assert_eq!(s.chain_next(&wait, now_ms()).await.expect("chain"), vec![Chained::Stale], "once");
    let rec = s.get_job("c").await.expect("get").expect("exists");
    assert_eq!((rec.next_ms, rec.chain_ms), (Some(next), None));
    assert!(s.chained(10).await.expect("chained").is_empty());
    assert!(s.due_jobs(next, 10).await.expect("due").jobs.iter().any(|r| r.spec.id == "c"));
    // Between two fires a re-put, or a resume of a job that is not paused, keeps the next fire
    // the end set: nothing brings it sooner than the delay.
    assert_eq!(write(&chained, now_ms() + 1000).await.next_ms, Some(next));
    match s.set_paused("c", false, Some(now_ms() + 1000), now_ms(), None).await.expect("resume") {
        Some(WatermarkWrite::Done { record, .. }) => assert_eq!(record.next_ms, Some(next)),
        other => panic!("{other:?}"),
    }
    // Put as another kind while waiting: the wait ends, the put's watermark stands.
    assert_eq!(s.claim(&fence, &[chain_claim(next)]).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    let cron = now_ms() + 60_000;
    let rec = write(&spec("c"), cron).await;
    assert_eq!((rec.next_ms, rec.chain_ms), (Some(cron), None));
    assert!(s.chained(10).await.expect("chained").is_empty());
    // An end whose next fire falls past end_time (a failed fire's, as any other's): completed.
    let bounded = JobSpec { end_ms: Some(cron + 2_000), ..chained.clone() };
    write(&bounded, cron).await;
    let mut e = run_claim(&*s, &fence, epoch, chain_claim(cron)).await;
    e.state = ExecState::Failed;
    e.start_ms = Some(cron);
    e.end_ms = Some(cron + 1_500);
    assert_eq!(s.finish(&e, "n1", "i1", Keep::DEFAULT, false).await.expect("finish"), Finish::Recorded);
    let wait = [("c".to_string(), cron)];
    assert_eq!(s.chain_next(&wait, now_ms()).await.expect("chain"), vec![Chained::Next(None)]);
    let rec = s.get_job("c").await.expect("get").expect("exists");
    assert_eq!((rec.next_ms, rec.chain_ms, rec.completed()), (None, None, true));
    // max_fires lowered to what it made while it waited: its fire's end sets no next fire.
    let capped_at = cron + 5_000;
    write(&chained, capped_at).await;
    let mut e = run_claim(&*s, &fence, epoch, chain_claim(capped_at)).await;
    let rec = write(&JobSpec { max_fires: 1, ..chained.clone() }, now_ms() + 1000).await;
    assert_eq!((rec.next_ms, rec.chain_ms), (None, Some(capped_at)));
    e.state = ExecState::Succeeded;
    e.start_ms = Some(capped_at);
    e.end_ms = Some(capped_at + 100);
    assert_eq!(s.finish(&e, "n1", "i1", Keep::DEFAULT, false).await.expect("finish"), Finish::Recorded);
    let wait = [("c".to_string(), capped_at)];
    assert_eq!(s.chain_next(&wait, now_ms()).await.expect("chain"), vec![Chained::Next(None)]);
    assert!(s.get_job("c").await.expect("get").expect("exists").completed());
    // Deleted while waiting: out of the chain index, and the step finds nothing to do.
    let later = cron + 10_000;
    write(&chained, later).await;
    assert_eq!(s.claim(&fence, &[chain_claim(later)]).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    let wait = [("c".to_string(), later)];
    assert_eq!(s.chain_next(&wait, now_ms()).await.expect("chain"), vec![Chained::Open], "dispatching");
    assert!(s.delete_job("c").await.expect("delete"));
    assert!(s.chained(10).await.expect("chained").is_empty());
    assert_eq!(s.chain_next(&wait, now_ms()).await.expect("chain"), vec![Chained::Stale]);
}

/// A shard's claim (`<job>@<ms>/<i>of<n>`).
fn shard_claim(job: &str, sched: i64, next: Option<i64>, index: u32, total: u32) -> Claim {
    let mut c = claim(job, sched, next, false);
    let fire = rota::execution::shard_fire_id(&c.exec.fire_id, rota::execution::Shard { index, total });
    c.exec = Execution::pending(job, fire, sched, "n1", 1);
    c
}

/// Sharding (PROTOCOL §3.23): the shards of one fire are claimed in one call, the first moving the
/// watermark and the others following it, each a fire of its own; claimed again, none is; a shard
/// claimed in another call than its fire's first is stale, and so is a whole fire's claim after its
/// shards in the same call.
async fn a_fires_shards_are_claimed_together_once(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    put(&*s, "s", 1000).await;
    let shards: Vec<Claim> = (0..3).map(|i| shard_claim("s", 1000, Some(2000), i, 3)).collect();
    let r = s.claim(&fence, &shards).await.expect("claim");
    assert_eq!(r, vec![ClaimOutcome::Claimed; 3]);
    let rec = s.get_job("s").await.expect("get").expect("exists");
    assert_eq!((rec.next_ms, rec.last_ms), (Some(2000), Some(1000)));
    for i in 0..3 {
        let e = newest_record(&*s, &format!("s@1000/{i}of3")).await;
        assert_eq!((e.state, e.scheduled_ms), (ExecState::Pending, 1000), "{e:?}");
    }
    // A replay of the same claim (a lost reply, a second master): every shard is stale.
    let r = s.claim(&fence, &shards).await.expect("claim");
    assert_eq!(r, vec![ClaimOutcome::Stale; 3]);
    // The next fire's first shard alone, then its second in another call: stale.
    let r = s.claim(&fence, &[shard_claim("s", 2000, Some(3000), 0, 2)]).await.expect("claim");
    assert_eq!(r, vec![ClaimOutcome::Claimed]);
    let r = s.claim(&fence, &[shard_claim("s", 2000, Some(3000), 1, 2)]).await.expect("claim");
    assert_eq!(r, vec![ClaimOutcome::Stale]);
    // A whole fire's claim after shards of its instant, in one call: only the shards follow.
    let r = s
        .claim(&fence, &[shard_claim("s", 3000, Some(4000), 0, 2), claim("s", 3000, Some(4000), false)])
        .await
        .expect("claim");
    assert_eq!(r, vec![ClaimOutcome::Claimed, ClaimOutcome::Stale]);
    let rec = s.get_job("s").await.expect("get").expect("exists");
    assert_eq!((rec.next_ms, rec.last_ms), (Some(4000), Some(3000)));
}

/// `max_fires` (issue 16): each claim that moves the watermark from a fire's instant counts one
/// (its shards once, a misfire's summary none, a replay none); a job that made its fires stays
/// without a watermark whatever a put or a resume says, until max_fires is raised.
async fn a_jobs_fires_are_counted_by_their_claims_and_max_fires_holds_it_completed(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    put(&*s, "m", 1000).await;
    let fired = |s: Arc<dyn Store>| async move { s.get_job("m").await.expect("get").expect("exists").fired };
    let mut summary = claim("m", 1000, Some(2000), false);
    summary.exec.close(ExecState::Misfired, "missed");
    assert_eq!(s.claim(&fence, &[summary]).await.expect("claim"), vec![ClaimOutcome::Misfired]);
    assert_eq!(fired(Arc::clone(&s)).await, 0, "a summary counts none");
    let two = [claim("m", 2000, Some(3000), false), claim("m", 3000, Some(4000), false)];
    assert_eq!(s.claim(&fence, &two).await.expect("claim"), vec![ClaimOutcome::Claimed; 2]);
    assert_eq!(s.claim(&fence, &two).await.expect("claim"), vec![ClaimOutcome::Stale; 2]);
    assert_eq!(fired(Arc::clone(&s)).await, 2, "a replay counts none");
    let shards: Vec<Claim> = (0..3).map(|i| shard_claim("m", 4000, None, i, 3)).collect();
    assert_eq!(s.claim(&fence, &shards).await.expect("claim"), vec![ClaimOutcome::Claimed; 3]);
    assert_eq!(fired(Arc::clone(&s)).await, 3, "a sharded fire counts once");
    // Made its three: a put (or a resume) of max_fires 3 leaves it without a watermark.
    let capped = |n: u32| rota::job::JobSpec { max_fires: n, ..spec("m") };
    let spec3 = capped(3);
    let w = api_write(&spec3, Some(now_ms() + 60_000));
    match s.write_job(&w).await.expect("put") {
        WatermarkWrite::Done { record, .. } => assert_eq!((record.next_ms, record.fired), (None, 3)),
        other => panic!("{other:?}"),
    }
    match s.set_paused("m", false, Some(now_ms() + 60_000), now_ms(), None).await.expect("resume") {
        Some(WatermarkWrite::Done { record, .. }) => assert_eq!(record.next_ms, None),
        other => panic!("{other:?}"),
    }
    // Raised to 4: it fires again.
    let w = JobWrite { spec: &capped(4), ..w };
    match s.write_job(&w).await.expect("put") {
        WatermarkWrite::Done { record, .. } => assert_eq!(record.next_ms, w.next_ms),
        other => panic!("{other:?}"),
    }
}

/// PauseJob's note (issue 16): kept with the pause, read back with the job, kept by a re-put that
/// keeps the pause; its `until` makes the job `resumable` from then; a resume drops both, and a
/// deleted job is resumable no more.
async fn a_pause_keeps_its_note_and_its_until_makes_it_resumable(s: Arc<dyn Store>) {
    put(&*s, "z", now_ms() + 60_000).await;
    let note = PauseNote { note: "freeze".into(), by: "alice".into(), at_ms: 5, until_ms: Some(1_000) };
    s.set_paused("z", true, None, now_ms(), Some(&note)).await.expect("pause").expect("exists");
    let rec = s.get_job("z").await.expect("get").expect("exists");
    assert_eq!((rec.spec.paused, rec.pause.as_ref()), (true, Some(&note)));
    assert!(s.resumable(999, 10).await.expect("resumable").is_empty());
    assert_eq!(s.resumable(1_000, 10).await.expect("resumable"), ["z"]);
    // A re-put that keeps the pause (PutJob without `paused`) keeps the note.
    let keep = rota::job::JobSpec { description: "again".into(), ..spec("z") };
    let w = api_write(&keep, Some(now_ms() + 60_000));
    s.write_job(&w).await.expect("put");
    assert_eq!(s.get_job("z").await.expect("get").expect("exists").pause.as_ref(), Some(&note));
    s.set_paused("z", false, Some(now_ms() + 60_000), now_ms(), None).await.expect("resume").expect("exists");
    assert_eq!(s.get_job("z").await.expect("get").expect("exists").pause, None);
    assert!(s.resumable(i64::MAX, 10).await.expect("resumable").is_empty());
    s.set_paused("z", true, None, now_ms(), Some(&note)).await.expect("pause").expect("exists");
    // A put that says paused is a pause of its own: the note and its until go.
    let w = JobWrite { paused: Some(true), ..api_write(&keep, None) };
    s.write_job(&w).await.expect("put");
    let rec = s.get_job("z").await.expect("get").expect("exists");
    assert_eq!((rec.spec.paused, rec.pause), (true, None));
    assert!(s.resumable(i64::MAX, 10).await.expect("resumable").is_empty());
    s.set_paused("z", true, None, now_ms(), Some(&note)).await.expect("pause").expect("exists");
    assert!(s.delete_job("z").await.expect("delete"));
    assert!(s.resumable(i64::MAX, 10).await.expect("resumable").is_empty());
}

/// `pause_after_failures` (issue 16): failed fires raise the job's streak, a success clears it, a
/// resume counts afresh; a deleted job's outcome writes nothing (no hash made of it).
async fn a_jobs_failed_fires_in_a_row_are_counted_until_a_success_or_a_resume(s: Arc<dyn Store>) {
    put(&*s, "f", now_ms() + 60_000).await;
    assert_eq!(s.fire_outcome("f", true).await.expect("count"), Some(1));
    assert_eq!(s.fire_outcome("f", true).await.expect("count"), Some(2));
    assert_eq!(s.get_job("f").await.expect("get").expect("exists").fail_streak, 2);
    assert_eq!(s.fire_outcome("f", false).await.expect("count"), Some(0));
    assert_eq!(s.fire_outcome("f", true).await.expect("count"), Some(1));
    s.set_paused("f", true, None, now_ms(), None).await.expect("pause").expect("exists");
    assert_eq!(s.get_job("f").await.expect("get").expect("exists").fail_streak, 1, "a pause keeps it");
    s.set_paused("f", false, Some(now_ms() + 60_000), now_ms(), None).await.expect("resume").expect("exists");
    assert_eq!(s.get_job("f").await.expect("get").expect("exists").fail_streak, 0, "a resume counts afresh");
    assert!(s.delete_job("f").await.expect("delete"));
    assert_eq!(s.fire_outcome("f", true).await.expect("count"), None);
    assert!(s.get_job("f").await.expect("get").is_none(), "no hash made of a deleted job");
}

/// Priorities (PROTOCOL §3.22): a fire waits in its node's queue list of its job's priority, kept
/// with the fire from its claim or trigger; a take goes by the caller's order of levels and says
/// which levels held entries; a thief takes the highest level; a reap moves a dead node's entry to
/// the same level of the target; a cancel takes an entry out of its level; a waiting take is woken
/// by a push (the doorbell) rather than its wait running out.
async fn a_nodes_queue_is_taken_by_priority(s: Arc<dyn Store>) {
    use Priority::{High, Low, Normal};
    let fence = master(&*s).await;
    s.register(&node("n1", "i1"), 400, None).await.expect("register");
    s.register(&node("n2", "i2"), 60_000, None).await.expect("register");
    let sched = now_ms() / 1000 * 1000 + 1000;
    let mut fires = Vec::new();
    for (job, level) in [("lo1", Low), ("no1", Normal), ("hi1", High), ("lo2", Low), ("hi2", High), ("no2", Normal)] {
        let fire = claimed_at(&*s, &fence, job, sched, level).await;
        assert_eq!(s.enqueue(&fence, &fire, "n1").await.expect("enqueue"), Enqueue::Queued);
        fires.push(fire);
    }
    let [lo1, no1, hi1, lo2, hi2, no2] = fires.try_into().expect("six");
    // Listed highest level first, newest first within a level (as a list is read).
    let (q, _) = s.node_fires("n1").await.expect("lists");
    assert_eq!(q, vec![hi2.clone(), hi1.clone(), no2.clone(), no1.clone(), lo2.clone(), lo1.clone()]);
    assert_eq!(s.queue_lengths(&["n1".into(), "n2".into()]).await.expect("lens"), vec![6, 0]);
    let take = |order: [Priority; 3]| {
        let s = Arc::clone(&s);
        async move { s.take_queued("n1", order).await.expect("take").expect("an entry") }
    };
    let t = take(Priority::ALL).await;
    assert_eq!((t.fire_id, t.level, t.waiting), (hi1.clone(), High, vec![High, Normal, Low]));
    let t = take([Low, High, Normal]).await;
    assert_eq!((t.fire_id, t.level), (lo1.clone(), Low), "the caller's order");
    // A thief takes the highest waiting level.
    assert_eq!(s.steal("n1", "n2", "i2").await.expect("steal").as_deref(), Some(hi2.as_str()));
    // Cancelled while queued: out of its level's list.
    let rec = newest_record(&*s, &lo2).await;
    assert_eq!(s.cancel(&cancelled(&rec.id, &lo2, "lo2"), false).await.expect("cancel"), Cancel::Cancelled);
    let (q, _) = s.node_fires("n1").await.expect("lists");
    assert_eq!(q, vec![no2.clone(), no1.clone()]);
    // n1 dies: its normal entries move to n2's normal list; a manual high fire queued on n2 beside
    // them is taken first.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for f in [&no1, &no2] {
        let req = ReapRequest {
            by: ReapBy::Master(fence.clone()),
            dead_node: "n1".into(),
            fires: NodeFires::Queued,
            fire_id: f.clone(),
            target: "n2".into(),
            rerun: false,
            max_recoveries: Some(2),
            lock_ttl_ms: 60_000,
        };
        assert_eq!(s.reap(&req).await.expect("reap"), Reap::Moved);
    }
    let manual = Execution::manual("hi1", now_ms(), "n2");
    let made = s.trigger(&manual, None, Concurrency::Allow, 60_000, &FireOwn::default(), High).await.expect("trigger");
    assert_eq!(made, TriggerOutcome::Created(manual.clone()));
    assert_eq!(s.enqueue(&fence, &manual.fire_id, "n2").await.expect("enqueue"), Enqueue::Queued);
    let order = [Normal, Low, High];
    let t = s.take_queued("n2", Priority::ALL).await.expect("take").expect("entry");
    assert_eq!((t.fire_id.as_str(), t.level, t.waiting), (manual.fire_id.as_str(), High, vec![Normal]));
    let t = s.take_queued("n2", order).await.expect("take").expect("entry");
    assert_eq!((t.fire_id, t.level, t.waiting), (no1.clone(), Normal, vec![Normal]));
    let t = s.take_queued("n2", order).await.expect("take").expect("entry");
    assert_eq!(t.fire_id, no2);
    assert_eq!(s.take_queued("n2", order).await.expect("take"), None);
    // A push after a take found the queue empty rings its doorbell: a wait then returns at once.
    let rung = claimed_at(&*s, &fence, "rung", sched, Normal).await;
    assert_eq!(s.enqueue(&fence, &rung, "n2").await.expect("enqueue"), Enqueue::Queued);
    let waited = tokio::time::timeout(Duration::from_secs(20), s.wait_queued("n2", Duration::from_secs(30))).await;
    waited.expect("the bell had rung").expect("wait");
    let t = s.take_queued("n2", order).await.expect("take").expect("entry");
    assert_eq!(t.fire_id, rung);
    assert_eq!(s.take_queued("n2", order).await.expect("take"), None);
    // A wait on an empty queue is woken by what is pushed meanwhile.
    let late = claimed_at(&*s, &fence, "late", sched, Low).await;
    let got = woken_by_a_push(&s, &fence, "n2", &late).await;
    assert_eq!(got.map(|t| (t.fire_id, t.level)), Some((late, Low)));
}

/// Concurrency limits (PROTOCOL §3.21): a holder takes a slot of every limit it names or none; a
/// full limit says who is full; a slot taken again by its holder counts once; a lapsed lease (a
/// dead node's) frees its slot, and its holder's renewal says it lost it; a deleted limit limits
/// nothing; listing counts the live slots.
async fn limit_slots_are_all_or_none_leased_and_given_back(s: Arc<dyn Store>) {
    use rota::job::limit::Limit;
    use rota::store::Slots;
    s.put_limit(&Limit::new("db", 2, "", "team=db").expect("limit")).await.expect("put");
    s.put_limit(&Limit::new("one", 1, "mysql.report", "").expect("limit")).await.expect("put");
    let (db, both) = (vec!["db".to_string()], vec!["db".to_string(), "one".to_string()]);
    assert_eq!(s.take_slots(&both, "a@1", 60_000).await.expect("take"), Slots::Taken);
    assert_eq!(s.take_slots(&both, "a@1", 60_000).await.expect("again"), Slots::Taken, "its own slots count once");
    assert_eq!(
        s.take_slots(&both, "b@1", 60_000).await.expect("take"),
        Slots::Full { limit: "one".into(), running: 1, max: 1 }
    );
    // All or none: b took no slot of db when one was full.
    assert_eq!(s.take_slots(&db, "c@1", 60_000).await.expect("take"), Slots::Taken);
    assert_eq!(
        s.take_slots(&db, "d@1", 60_000).await.expect("take"),
        Slots::Full { limit: "db".into(), running: 2, max: 2 }
    );
    let listed = s.list_limits().await.expect("list");
    let counts: Vec<(String, u32, u32)> = listed.iter().map(|(l, n)| (l.name.clone(), l.max, *n)).collect();
    assert_eq!(counts, vec![("db".into(), 2, 2), ("one".into(), 1, 1)]);
    // Given back: another takes it.
    s.release_slots(&both, "a@1").await.expect("release");
    assert_eq!(s.take_slots(&db, "d@1", 60_000).await.expect("take"), Slots::Taken);
    // A lapsed lease frees the slot; its holder's renewal says so.
    assert_eq!(s.renew_slots(&db, "c@1", 1).await.expect("renew"), Vec::<String>::new());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(s.take_slots(&db, "e@1", 60_000).await.expect("take"), Slots::Taken, "c's lapsed slot is free");
    assert_eq!(s.renew_slots(&db, "c@1", 60_000).await.expect("renew"), db.clone(), "lost: db is full without it");
    // With room again, a lapsed slot is taken back by its holder's renewal.
    s.release_slots(&db, "e@1").await.expect("release");
    assert_eq!(s.renew_slots(&db, "c@1", 60_000).await.expect("renew"), Vec::<String>::new());
    assert_eq!(
        s.take_slots(&db, "h@1", 60_000).await.expect("take"),
        Slots::Full { limit: "db".into(), running: 2, max: 2 }
    );
    s.release_slots(&db, "c@1").await.expect("release");
    // A limit replaced takes its new max; deleted, it limits nothing.
    s.put_limit(&Limit::new("db", 3, "", "team=db").expect("limit")).await.expect("put");
    assert_eq!(s.take_slots(&db, "f@1", 60_000).await.expect("take"), Slots::Taken);
    assert!(s.delete_limit("db").await.expect("delete"));
    assert!(!s.delete_limit("db").await.expect("delete again"));
    assert_eq!(s.take_slots(&db, "g@1", 60_000).await.expect("take"), Slots::Taken);
    let names: Vec<String> = s.list_limits().await.expect("list").into_iter().map(|(l, _)| l.name).collect();
    assert_eq!(names, vec!["one".to_string()]);
}

/// Overlap policies (PROTOCOL §3.20): a `buffer` fire that finds the job's lock held waits for it
/// (held, pending, in nobody's hands), up to the limit, then fires are skipped saying so; the
/// running fire's finish hands the lock to the oldest held fire, into the finishing node's queue;
/// a held fire can be cancelled; a lock that expired with fires held is handed on by the master's
/// sweep. A `replace` fire asks the running holder to stop (its node's stop list) and replaces a
/// fire held before it (skipped, saying by which). Manual fires obey the same.
async fn overlap_policies_hold_fires_and_hand_the_lock_on(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let base = now_ms() / 1000 * 1000 + 1000;
    let claim_one = |job: &str, at: i64, o: Concurrency| {
        let (s, fence, c) = (Arc::clone(&s), fence.clone(), claim_with(job, at, Some(at + 1000), o));
        async move {
            let out = s.claim(&fence, std::slice::from_ref(&c)).await.expect("claim");
            (out.into_iter().next().expect("one outcome"), c)
        }
    };
    let run_on_n1 = |fire: String| {
        let (s, epoch) = (Arc::clone(&s), epoch_of(&fence));
        async move {
            assert_eq!(s.take_only(&fire, Some(epoch), "n1", "i1").await.expect("take"), Accept::Accepted);
            let Start::Run(sf) = s.start(&fire, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
                panic!("not started")
            };
            sf
        }
    };
    // Buffer 2: one runs, two wait, the fourth is skipped.
    let b = Concurrency::Buffer(2);
    put(&*s, "b", base).await;
    let (o1, c1) = claim_one("b", base, b).await;
    assert_eq!(o1, ClaimOutcome::Claimed);
    let sf = run_on_n1(c1.exec.fire_id.clone()).await;
    let (o2, c2) = claim_one("b", base + 1000, b).await;
    let (o3, c3) = claim_one("b", base + 2000, b).await;
    let (o4, c4) = claim_one("b", base + 3000, b).await;
    assert_eq!((o2, o3, o4), (ClaimOutcome::Held(None), ClaimOutcome::Held(None), ClaimOutcome::Skipped));
    assert_eq!(s.held_count("b").await.expect("held"), 2);
    let held = s.get_execution(&c2.exec.id).await.expect("get").expect("recorded");
    assert_eq!(held.state, ExecState::Pending, "a held fire reads pending");
    let skipped = s.get_execution(&c4.exec.id).await.expect("get").expect("recorded");
    assert_eq!(skipped.state, ExecState::Skipped);
    assert!(skipped.error.contains("2 fires already wait"), "{}", skipped.error);
    // Held fires are in nobody's hands and not due for the sweep.
    assert!(!s.stuck_dispatching(now_ms() + 86_400_000, 1000).await.expect("stuck").contains(&c2.exec.fire_id));
    assert!(s.take_only(&c2.exec.fire_id, Some(epoch_of(&fence)), "n1", "i1").await.expect("take") != Accept::Accepted);
    // The run ends: the lock passes to the oldest held fire, queued on the finishing node.
    let mut done = Execution::pending("b", c1.exec.fire_id.clone(), base, "n1", 1);
    done.id = sf.exec_id.clone();
    done.start_ms = Some(sf.start_ms);
    done.close(ExecState::Succeeded, "");
    assert_eq!(s.finish(&done, "n1", "i1", Keep::DEFAULT, true).await.expect("finish"), Finish::Recorded);
    assert_eq!(s.node_fires("n1").await.expect("lists").0, vec![c2.exec.fire_id.clone()]);
    assert!(s.renew_lock("b", &c2.exec.fire_id, 60_000).await.expect("renew"), "the held fire owns the lock");
    assert_eq!(s.held_count("b").await.expect("held"), 1);
    // The next held fire is cancelled while it waits: out of the held list, never run.
    assert_eq!(
        s.cancel(&cancelled(&c3.exec.id, &c3.exec.fire_id, "b"), false).await.expect("cancel"),
        Cancel::Cancelled
    );
    assert_eq!(s.held_count("b").await.expect("held"), 0);
    assert_eq!(s.get_execution(&c3.exec.id).await.expect("get").map(|e| e.state), Some(ExecState::Cancelled));
    // The promoted fire runs as any queued one does.
    assert_eq!(
        s.take_queued("n1", Priority::ALL).await.expect("pop").map(|t| t.fire_id),
        Some(c2.exec.fire_id.clone())
    );
    assert!(matches!(
        s.start(&c2.exec.fire_id, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start"),
        Start::Run(_)
    ));

    // A lock that expires with a fire held (its holder's node died): the sweep hands it on.
    let e = Concurrency::Buffer(1);
    put(&*s, "e", base).await;
    let (_, e1) = claim_one("e", base, e).await;
    let (eo, e2) = claim_one("e", base + 1000, e).await;
    assert_eq!(eo, ClaimOutcome::Held(None));
    assert!(s.renew_lock("e", &e1.exec.fire_id, 1).await.expect("renew"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(s.promote_held(&fence, 60_000).await.expect("promote"), vec![e2.exec.fire_id.clone()]);
    assert!(s.stuck_dispatching(now_ms() + 10, 1000).await.expect("stuck").contains(&e2.exec.fire_id));
    assert_eq!(
        s.take_only(&e2.exec.fire_id, Some(epoch_of(&fence)), "n1", "i1").await.expect("take"),
        Accept::Accepted
    );
    assert!(s.promote_held(&fence, 60_000).await.expect("again").is_empty(), "nothing more to hand on");
    // Expired again with a fire held, and a new fire comes before the sweep: it waits behind the
    // held one, which takes the lock (`dispatching`, due for the sweep), oldest first.
    let (eo3, e3) = claim_one("e", base + 2000, e).await;
    assert_eq!(eo3, ClaimOutcome::Held(None));
    assert!(s.renew_lock("e", &e2.exec.fire_id, 1).await.expect("renew"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (eo4, e4) = claim_one("e", base + 3000, Concurrency::Buffer(2)).await;
    assert_eq!(eo4, ClaimOutcome::Held(None), "behind the fire held before it");
    assert!(s.renew_lock("e", &e3.exec.fire_id, 60_000).await.expect("renew"), "the oldest took the lock");
    assert!(s.stuck_dispatching(now_ms() + 10, 1000).await.expect("stuck").contains(&e3.exec.fire_id));
    assert_eq!(s.held_count("e").await.expect("held"), 1);
    assert!(!s.renew_lock("e", &e4.exec.fire_id, 60_000).await.expect("renew"));

    // Replace: the running holder is asked to stop; a fire held before is replaced.
    put(&*s, "r", base).await;
    let (_, r1) = claim_one("r", base, Concurrency::Replace).await;
    let rf = run_on_n1(r1.exec.fire_id.clone()).await;
    let (ro2, r2) = claim_one("r", base + 1000, Concurrency::Replace).await;
    let stop = StopRequest {
        fire: r1.exec.fire_id.clone(),
        exec: rf.exec_id.clone(),
        why: rota::store::replaced_why(&r2.exec.fire_id),
    };
    assert_eq!(ro2, ClaimOutcome::Held(Some(rota::store::Replacing { node: "n1".into(), stop: stop.clone() })));
    assert_eq!(s.take_stops("n1").await.expect("stops"), vec![stop]);
    let (ro3, r3) = claim_one("r", base + 2000, Concurrency::Replace).await;
    assert!(matches!(ro3, ClaimOutcome::Held(Some(_))), "{ro3:?}");
    let replaced = s.get_execution(&r2.exec.id).await.expect("get").expect("recorded");
    assert_eq!(replaced.state, ExecState::Skipped);
    assert!(replaced.error.contains(&format!("replaced by a newer fire, {}", r3.exec.fire_id)), "{}", replaced.error);
    assert_eq!(s.held_count("r").await.expect("held"), 1);

    // The lock expires with a fire held (its holder's node died): the next replace fire replaces
    // it and takes the lock at once.
    put(&*s, "x", base).await;
    let (_, x1) = claim_one("x", base, Concurrency::Replace).await;
    let (_, x2) = claim_one("x", base + 1000, Concurrency::Replace).await;
    assert!(s.renew_lock("x", &x1.exec.fire_id, 1).await.expect("renew"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (xo3, x3) = claim_one("x", base + 2000, Concurrency::Replace).await;
    assert_eq!(xo3, ClaimOutcome::Claimed);
    assert_eq!(s.get_execution(&x2.exec.id).await.expect("get").map(|e| e.state), Some(ExecState::Skipped));
    assert!(s.renew_lock("x", &x3.exec.fire_id, 60_000).await.expect("renew"));
    assert_eq!(s.held_count("x").await.expect("held"), 0);
    // Manual fires obey the policies: a full buffer skips, a replace holds.
    let m = manual("b");
    let out = s
        .trigger(&m, None, Concurrency::Buffer(1), 60_000, &FireOwn::default(), Priority::Normal)
        .await
        .expect("trigger");
    assert!(matches!(out, TriggerOutcome::Held(_, None)), "the lock is held and nothing waits: {out:?}");
    let out = s
        .trigger(&manual("b"), None, Concurrency::Buffer(1), 60_000, &FireOwn::default(), Priority::Normal)
        .await
        .expect("trigger");
    assert!(matches!(&out, TriggerOutcome::Skipped(e) if e.error.contains("already waits")), "{out:?}");
    let out = s
        .trigger(&manual("r"), None, Concurrency::Replace, 60_000, &FireOwn::default(), Priority::Normal)
        .await
        .expect("trigger");
    assert!(matches!(out, TriggerOutcome::Held(_, Some(_))), "{out:?}");
    assert_eq!(s.get_execution(&r3.exec.id).await.expect("get").map(|e| e.state), Some(ExecState::Skipped));
}

/// A node that is not master does not start a master-only job's fire: nothing changes, and the
/// fire is still there to hand to the master; a master starts it.
async fn a_master_only_fire_is_not_started_off_the_master(s: Arc<dyn Store>) {
    let fence = master(&*s).await;
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let sched = now_ms() / 1000 * 1000 + 1000;
    let mut mo = spec("mo");
    mo.master_only = true;
    // Arguments that merely mention master_only do not make a job master-only.
    let mut look = spec("look");
    look.args = serde_json::json!({"master_only": true});
    for j in [&mo, &look] {
        assert!(matches!(s.put_job(j, Some(sched), now_ms()).await.expect("put"), WatermarkWrite::Done { .. }));
    }
    let claims = [claim("mo", sched, None, false), claim("look", sched, None, false)];
    s.claim(&fence, &claims).await.expect("claim");
    let (f_mo, f_look) = (claims[0].exec.fire_id.clone(), claims[1].exec.fire_id.clone());
    for f in [&f_mo, &f_look] {
        assert_eq!(s.enqueue(&fence, f, "n1").await.expect("enqueue"), Enqueue::Queued);
        assert_eq!(s.take_queued("n1", Priority::ALL).await.expect("pop").map(|t| t.fire_id).as_ref(), Some(f));
    }
    assert_eq!(s.start(&f_mo, "n1", "i1", "x", MasterOnly::Refuse).await.expect("start"), Start::MasterOnly);
    assert!(s.node_fires("n1").await.expect("lists").1.contains(&f_mo), "still in the processing list");
    assert!(matches!(s.start(&f_look, "n1", "i1", "x", MasterOnly::Refuse).await.expect("start"), Start::Run(_)));
    // A node that believes it is master starts it only while the stored lease is its incarnation's
    // (the lease is n1's earlier incarnation's here); with the lease its own, it does.
    assert_eq!(s.start(&f_mo, "n1", "i1", "x", MasterOnly::Verify).await.expect("start"), Start::MasterOnly);
    assert!(s.release_lease(&fence).await.expect("release"));
    assert!(matches!(s.acquire_lease("n1", "i1", 600_000, 0).await.expect("acquire"), LeaseAcquire::Acquired(_)));
    assert!(matches!(s.start(&f_mo, "n1", "i1", "x", MasterOnly::Verify).await.expect("start"), Start::Run(_)));
}

/// The start-of-run write (`update_execution`) never reopens a record already closed, e.g. one the
/// reaper recorded lost while its node was paused: the write is refused and the caller told.
async fn a_terminal_record_is_never_reopened(s: Arc<dyn Store>) {
    let mut e = Execution::pending("t", scheduled_fire_id("t", 1), 1, "n1", 1);
    e.state = ExecState::Running;
    assert!(s.update_execution(&e).await.expect("update"), "a new record is written");
    assert!(s.update_execution(&e).await.expect("update"), "an open record is overwritten");
    let mut lost = e.clone();
    lost.state = ExecState::Lost;
    s.finish_execution(&lost, false).await.expect("finish");
    assert!(!s.update_execution(&e).await.expect("update"), "a closed record is not reopened");
    // A retry's record written after the reaper closed that attempt (its node was judged dead
    // during the backoff) leaves the reaper's record as it is.
    let mut retry = e.clone();
    retry.state = ExecState::Pending;
    assert!(!s.create_execution(&retry).await.expect("create"), "a closed record is not overwritten");
    let got = s.get_execution(&e.id).await.expect("get").expect("exists");
    assert_eq!(got.state, ExecState::Lost);
}

/// A finish reads the job's lock only for a fire that may hold it: one claimed as a forbid fire
/// (the claim marks its hash), or, for a fire claimed before that mark existed, one whose job the
/// worker says is forbid. A fire with neither leaves the lock alone.
#[tokio::test]
async fn redis_a_finish_releases_the_lock_its_fire_holds() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), "rota", "test", RETENTION_MS).await.expect("connect");
    let s: &dyn Store = &store;
    let fence = master(s).await;
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let mut c = ::redis::Client::open(server.url()).and_then(|c| c.get_connection()).expect("redis");
    // (how the fire's hash is left, what the worker says, whether the next fire finds the lock free)
    for (i, (unmark, worker_says_forbid, released)) in
        [(false, false, true), (true, true, true), (true, false, false)].into_iter().enumerate()
    {
        let job = format!("lk{i}");
        let fire = claimed_fire(s, &fence, &job, 1000, true).await;
        if unmark {
            let _: () = ::redis::cmd("HDEL").arg(store.keys().fire(&fire)).arg("lock").query(&mut c).expect("hdel");
        }
        assert_eq!(s.enqueue(&fence, &fire, "n1").await.expect("enqueue"), Enqueue::Queued);
        assert_eq!(s.take_queued("n1", Priority::ALL).await.expect("pop").map(|t| t.fire_id), Some(fire.clone()));
        let Start::Run(sf) = s.start(&fire, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
            panic!("not started")
        };
        let mut e = Execution::pending(&job, fire.clone(), sf.sched_ms, "n1", 1);
        e.id = sf.exec_id.clone();
        e.state = ExecState::Succeeded;
        let done = s.finish(&e, "n1", "i1", Keep::DEFAULT, worker_says_forbid).await.expect("finish");
        assert_eq!(done, Finish::Recorded);
        let next = claim(&job, sf.sched_ms + 1000, Some(sf.sched_ms + 2000), true);
        let want = if released { ClaimOutcome::Claimed } else { ClaimOutcome::Skipped };
        assert_eq!(s.claim(&fence, &[next]).await.expect("claim"), vec![want], "case {i}");
    }
}

/// A claim asked `here` whose claimer's processing list or heartbeat someone clobbered (a key of the
/// wrong type) is claimed `dispatching`, as without `here`, for the router (whose accept then
/// reports the key): the claim itself loses nothing.
#[tokio::test]
async fn redis_a_claim_here_into_a_clobbered_list_is_claimed_as_usual() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), "rota", "test", RETENTION_MS).await.expect("connect");
    let s: &dyn Store = &store;
    let fence = master(s).await;
    s.register(&node("n1", &fence.incarnation), 60_000, None).await.expect("register");
    let mut c = ::redis::Client::open(server.url()).and_then(|c| c.get_connection()).expect("redis");
    let _: () = ::redis::cmd("SET").arg(store.keys().processing("n1")).arg("x").query(&mut c).expect("clobber");
    let sched = now_ms() / 1000 * 1000 + 1000;
    put(s, "hc", sched).await;
    let cl = Claim { here: true, ..claim("hc", sched, Some(sched + 1000), false) };
    assert_eq!(s.claim(&fence, std::slice::from_ref(&cl)).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    let held: String =
        ::redis::cmd("HGET").arg(store.keys().fire(&cl.exec.fire_id)).arg("state").query(&mut c).expect("hget");
    assert_eq!(held, "dispatching");
    let accepted = s.take_only(&cl.exec.fire_id, Some(fence.epoch), "n1", &fence.incarnation).await;
    assert!(matches!(accepted, Err(rota::Error::Corrupt { .. })), "{accepted:?}");
    // A heartbeat of the wrong type reads as not live: the claims of the call are all made (none
    // half written), `dispatching`, in the sweep's watch set.
    let _: () = ::redis::cmd("DEL").arg(store.keys().processing("n1")).query(&mut c).expect("unclobber");
    let hb = store.keys().hb("n1");
    let _: () = ::redis::pipe().del(&hb).rpush(&hb, "x").query(&mut c).expect("clobber hb");
    let sched = sched + 1000;
    for j in ["hd1", "hd2"] {
        put(s, j, sched).await;
    }
    let both: Vec<Claim> =
        ["hd1", "hd2"].iter().map(|j| Claim { here: true, ..claim(j, sched, Some(sched + 1000), false) }).collect();
    assert_eq!(s.claim(&fence, &both).await.expect("claim"), vec![ClaimOutcome::Claimed, ClaimOutcome::Claimed]);
    for cl in &both {
        let held: String =
            ::redis::cmd("HGET").arg(store.keys().fire(&cl.exec.fire_id)).arg("state").query(&mut c).expect("hget");
        assert_eq!(held, "dispatching");
        let watched: Option<f64> =
            ::redis::cmd("ZSCORE").arg(store.keys().inflight()).arg(&cl.exec.fire_id).query(&mut c).expect("zscore");
        assert!(watched.is_some(), "{} is in the watch set", cl.exec.fire_id);
    }
}

/// A node's queue lists of the wrong type (PROTOCOL §3.22): an enqueue into a clobbered level list
/// is refused with the key named and nothing written (the fire stays `dispatching`, watched); a
/// take passes over it and goes on with the other levels; a clobbered doorbell fails no push, and the next take that finds the
/// queue empty deletes it, after which a waiting take is woken again.
#[tokio::test]
async fn redis_a_clobbered_queue_list_or_doorbell_loses_nothing() {
    let server = RedisServer::start();
    let store = Arc::new(RedisStore::connect(&server.url(), "rota", "test", RETENTION_MS).await.expect("connect"));
    let s: Arc<dyn Store> = store.clone();
    let fence = master(&*s).await;
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let mut c = ::redis::Client::open(server.url()).and_then(|c| c.get_connection()).expect("redis");
    let [hi, _, _] = store.keys().queue_lists("n1");
    let _: () = ::redis::cmd("SET").arg(&hi).arg("x").query(&mut c).expect("clobber");
    let sched = now_ms() / 1000 * 1000 + 1000;
    let fire = claimed_at(&*s, &fence, "ph", sched, Priority::High).await;
    let refused = s.enqueue(&fence, &fire, "n1").await;
    assert!(
        matches!(&refused, Err(rota::Error::Corrupt { reason, .. }) if reason.contains(":q:n1:hi is a string")),
        "{refused:?}"
    );
    let state: String = ::redis::cmd("HGET").arg(store.keys().fire(&fire)).arg("state").query(&mut c).expect("hget");
    assert_eq!(state, "dispatching", "nothing written");
    // The other levels go on: normal fires are queued and taken past the clobbered list, by a
    // thief too.
    s.register(&node("n2", "i2"), 60_000, None).await.expect("register");
    let stolen = claimed_at(&*s, &fence, "ps", sched, Priority::Normal).await;
    assert_eq!(s.enqueue(&fence, &stolen, "n1").await.expect("enqueue"), Enqueue::Queued);
    let lens = s.queue_lengths(&["n1".into(), "n2".into()]).await.expect("a clobbered list counts 0");
    assert_eq!(lens, vec![1, 0]);
    assert_eq!(s.steal("n1", "n2", "i2").await.expect("steal"), Some(stolen));
    let other = claimed_at(&*s, &fence, "pm", sched, Priority::Normal).await;
    assert_eq!(s.enqueue(&fence, &other, "n1").await.expect("enqueue"), Enqueue::Queued);
    // The sweep, the rescan and the drain read the node's lists past it too.
    assert_eq!(s.node_fires("n1").await.expect("lists").0, vec![other.clone()]);
    assert_eq!(s.queue_levels("n1").await.expect("levels"), vec![Priority::Normal]);
    let t = s.take_queued("n1", Priority::ALL).await.expect("take").expect("the normal entry");
    assert_eq!((t.fire_id.as_str(), t.level), (other.as_str(), Priority::Normal));
    assert_eq!(s.take_queued("n1", Priority::ALL).await.expect("take"), None);
    // Put right, the same fire is queued; a clobbered bell fails no push.
    let _: () = ::redis::cmd("DEL").arg(&hi).query(&mut c).expect("unclobber");
    let bell = store.keys().bell("n1");
    let _: () = ::redis::cmd("SET").arg(&bell).arg("x").query(&mut c).expect("clobber bell");
    assert_eq!(s.enqueue(&fence, &fire, "n1").await.expect("enqueue"), Enqueue::Queued);
    let t = s.take_queued("n1", Priority::ALL).await.expect("take").expect("entry");
    assert_eq!((t.fire_id.as_str(), t.level), (fire.as_str(), Priority::High));
    // The queue empty: the take deletes the clobbered bell; a waiting take is woken by a push again.
    assert_eq!(s.take_queued("n1", Priority::ALL).await.expect("take"), None);
    let exists: bool = ::redis::cmd("EXISTS").arg(&bell).query(&mut c).expect("exists");
    assert!(!exists, "the clobbered bell is gone");
    // With nothing queued no take comes: a wait meeting a clobbered bell puts it right itself.
    let _: () = ::redis::cmd("SET").arg(&bell).arg("x").query(&mut c).expect("clobber bell");
    s.wait_queued("n1", Duration::from_secs(5)).await.expect("the wait puts the bell right");
    let exists: bool = ::redis::cmd("EXISTS").arg(&bell).query(&mut c).expect("exists");
    assert!(!exists, "the clobbered bell is gone again");
    let next = claimed_at(&*s, &fence, "pn", sched, Priority::Normal).await;
    let got = woken_by_a_push(&s, &fence, "n1", &next).await;
    assert_eq!(got.map(|t| t.fire_id), Some(next));
}

/// A queue entry that names no fire (garbage written by someone else) is set aside in the
/// dead-letter list with the reason, and the node goes on.
#[tokio::test]
async fn redis_poison_queue_entry_goes_to_the_dead_letter_list() {
    let server = RedisServer::start();
    let s = RedisStore::connect(&server.url(), "rota", "test", RETENTION_MS).await.expect("connect");
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let mut c = ::redis::Client::open(server.url()).and_then(|c| c.get_connection()).expect("redis");
    let _: () = ::redis::cmd("LPUSH").arg(s.keys().queue("n1")).arg("\u{0}garbage").query(&mut c).expect("lpush");
    let fire = s.take_queued("n1", Priority::ALL).await.expect("pop").map(|t| t.fire_id).expect("entry");
    assert_eq!(s.start(&fire, "n1", "i1", "x", MasterOnly::Anyway).await.expect("start"), Start::Poison);
    assert_eq!(s.node_fires("n1").await.expect("lists"), (vec![], vec![]));
    let dlq: Vec<String> = ::redis::cmd("LRANGE").arg(s.keys().dlq()).arg(0).arg(-1).query(&mut c).expect("dlq");
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0].contains("garbage") && dlq[0].contains("no such fire"), "{dlq:?}");
}

/// Starts made together go to Redis in one script call: a fire whose hash someone clobbered (a key
/// of the wrong type) fails alone, and the fires started with it start.
#[tokio::test]
async fn redis_one_bad_fire_does_not_fail_the_fires_started_with_it() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), "rota", "test", RETENTION_MS).await.expect("connect");
    let s: &dyn Store = &store;
    let fence = master(s).await;
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let mut fires = Vec::new();
    for j in ["b1", "b2", "b3"] {
        let f = claimed_fire(s, &fence, j, 1000, false).await;
        assert_eq!(s.enqueue(&fence, &f, "n1").await.expect("enqueue"), Enqueue::Queued);
        assert_eq!(s.take_queued("n1", Priority::ALL).await.expect("pop").map(|t| t.fire_id).as_ref(), Some(&f));
        fires.push(f);
    }
    let mut c = ::redis::Client::open(server.url()).and_then(|c| c.get_connection()).expect("redis");
    let clobbered = store.keys().fire(&fires[1]);
    let _: () = ::redis::pipe().del(&clobbered).set(&clobbered, "x").query(&mut c).expect("clobber");
    let starts = fires.iter().map(|f| s.start(f, "n1", "i1", "x", MasterOnly::Anyway));
    let got = futures_util::future::join_all(starts).await;
    assert!(matches!(got[0], Ok(Start::Run(_))), "{:?}", got[0]);
    assert!(got[1].is_err(), "{:?}", got[1]);
    assert!(matches!(got[2], Ok(Start::Run(_))), "{:?}", got[2]);
}

/// A Redis store with a master's fence and node n1 (incarnation i1) registered, and `job` due a
/// minute from now (`base`): where the Redis-only tests of records start, with a plain connection.
async fn redis_with_job(job: &str) -> (RedisServer, RedisStore, Fence, u64, i64, ::redis::Connection) {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), "rota", "test", RETENTION_MS).await.expect("connect");
    let fence = master(&store).await;
    let epoch = epoch_of(&fence);
    store.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let base = now_ms() / 1000 * 1000 + 60_000;
    put(&store, job, base).await;
    let c = ::redis::Client::open(server.url()).and_then(|c| c.get_connection()).expect("redis");
    (server, store, fence, epoch, base, c)
}

/// A sharded fire's instant is claimed once whatever its total (Redis only, PROTOCOL 3.23): were
/// Redis to lose the watermark's move but keep the fire's keys, a claim of the instant again, with
/// the other total `all` may count by then, is a DUP for every shard (the whole fire's key marks the
/// instant), and so is a claim of it as a fire that is not sharded.
#[tokio::test]
async fn redis_a_fanned_out_instant_is_never_fanned_out_again() {
    let (_server, store, fence, _epoch, base, mut c) = redis_with_job("fan").await;
    let s: &dyn Store = &store;
    let three: Vec<Claim> = (0..3).map(|i| shard_claim("fan", base, Some(base + 1000), i, 3)).collect();
    assert_eq!(s.claim(&fence, &three).await.expect("claim"), vec![ClaimOutcome::Claimed; 3]);
    let rewind = |c: &mut ::redis::Connection| {
        let _: () =
            ::redis::cmd("HSET").arg(store.keys().job("fan")).arg("next_ms").arg(base).query(c).expect("rewind");
    };
    rewind(&mut c);
    let two: Vec<Claim> = (0..2).map(|i| shard_claim("fan", base, Some(base + 1000), i, 2)).collect();
    let r = s.claim(&fence, &two).await.expect("claim");
    assert!(r.iter().all(|o| matches!(o, ClaimOutcome::Duplicate(why) if why.contains("fanned out"))), "{r:?}");
    rewind(&mut c);
    let r = s.claim(&fence, &[claim("fan", base, Some(base + 1000), false)]).await.expect("claim");
    assert!(matches!(&r[..], [ClaimOutcome::Duplicate(_)]), "{r:?}");
    // The watermark moved on each time; the next instant fans out as usual.
    let next: Vec<Claim> = (0..2).map(|i| shard_claim("fan", base + 1000, Some(base + 2000), i, 2)).collect();
    assert_eq!(s.claim(&fence, &next).await.expect("claim"), vec![ClaimOutcome::Claimed; 2]);
}

/// One record per fire (Redis only, PROTOCOL 4.2): the claim writes no record of its own, the fire
/// hash reads as its first execution from the claim to the outcome the finish writes into it, and
/// a retried attempt's record, kept apart while it runs, gives way to the hash's outcome.
#[tokio::test]
async fn redis_a_fire_hash_is_its_executions_record() {
    let (_server, store, fence, epoch, base, mut c) = redis_with_job("one").await;
    let s: &dyn Store = &store;
    let exists =
        |c: &mut ::redis::Connection, k: String| -> bool { ::redis::cmd("EXISTS").arg(k).query(c).expect("exists") };
    let claimed = claim("one", base, Some(base + 1000), false);
    assert_eq!(s.claim(&fence, std::slice::from_ref(&claimed)).await.expect("claim"), vec![ClaimOutcome::Claimed]);
    let id = claimed.exec.id.clone();
    assert!(!exists(&mut c, store.keys().exec(&id)), "no record of its own");
    let pending = s.get_execution(&id).await.expect("get").expect("pending record");
    assert_eq!(
        (pending.state, pending.attempt, pending.scheduled_ms, pending.epoch),
        (ExecState::Pending, 1, base, epoch)
    );
    let fire = claimed.exec.fire_id.clone();
    assert_eq!(s.take_only(&fire, Some(epoch), "n1", "i1").await.expect("accept"), Accept::Accepted);
    let Start::Run(sf) = s.start(&fire, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("not started")
    };
    assert_eq!(sf.exec_id, id, "the claim's execution is the one started");
    let run = s.get_execution(&id).await.expect("get").expect("running record");
    assert_eq!((run.state, run.node_id.as_str(), run.start_ms), (ExecState::Running, "n1", Some(sf.start_ms)));
    let mut done = run.clone();
    done.close(ExecState::Failed, "exit status 3");
    done.output = "partial output".into();
    done.stderr = "boom".into();
    assert_eq!(s.finish(&done, "n1", "i1", Keep::DEFAULT, false).await.expect("finish"), Finish::Recorded);
    assert!(!exists(&mut c, store.keys().exec(&id)), "still no record of its own");
    assert_eq!(s.get_execution(&id).await.expect("get"), Some(done.clone()));
    let (page, _) = s
        .list_executions(&ExecFilter { job_id: Some("one".into()), limit: 10, ..Default::default() })
        .await
        .expect("list");
    assert_eq!(page, vec![done.clone()]);
    // A retry: the failed first attempt is kept apart, the second runs with a record kept apart
    // too (written while it runs), and its outcome goes into the hash, which then wins.
    put(s, "two", base).await;
    let mut first = running(s, &fence, epoch, "two", base).await;
    first.start_ms = Some(now_ms());
    first.close(ExecState::Failed, "first try");
    first.next_attempt_ms = Some(now_ms());
    s.finish_execution(&first, false).await.expect("record the failed attempt");
    let mut second = Execution::pending("two", first.fire_id.clone(), base, "n1", 2);
    second.epoch = epoch;
    assert_eq!(s.retry_attempt(&first.fire_id, "n1", "i1", &second.id).await.expect("retry"), Some(2));
    assert!(s.create_execution(&second).await.expect("create"));
    second.state = ExecState::Running;
    second.start_ms = Some(now_ms());
    assert!(s.update_execution(&second).await.expect("update"));
    assert_eq!(s.get_execution(&second.id).await.expect("get"), Some(second.clone()));
    second.close(ExecState::Succeeded, "");
    assert_eq!(s.finish(&second, "n1", "i1", Keep::DEFAULT, false).await.expect("finish"), Finish::Recorded);
    assert_eq!(s.get_execution(&second.id).await.expect("get"), Some(second.clone()));
    assert!(!exists(&mut c, store.keys().exec(&second.id)), "the running record kept apart is gone");
    assert_eq!(s.get_execution(&first.id).await.expect("get"), Some(first.clone()));
}

/// A job's executions index outlives every record it indexes (Redis only): the finish refreshes
/// its TTL to the retention and a margin on the job's first finish in the process (and every half
/// hour after), so records its later finishes write, each kept the retention from its fire's claim
/// (the fire hash is the record, section 4.2), expire before the index does.
#[tokio::test]
async fn redis_a_jobs_index_outlives_the_records_it_indexes() {
    let (_server, store, fence, epoch, base, mut c) = redis_with_job("ix").await;
    let s: &dyn Store = &store;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut e = running(s, &fence, epoch, "ix", base + i * 1000).await;
        e.state = ExecState::Succeeded;
        e.end_ms = Some(now_ms());
        assert_eq!(s.finish(&e, "n1", "i1", Keep::DEFAULT, false).await.expect("finish"), Finish::Recorded);
        ids.push(e.id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let index: i64 = ::redis::cmd("PTTL").arg(store.keys().job_execs("ix")).query(&mut c).expect("pttl");
    for id in &ids {
        let fire = rota::execution::fire_of_execution(id).expect("an id names its fire");
        let rec: i64 = ::redis::cmd("PTTL").arg(store.keys().fire(fire)).query(&mut c).expect("pttl");
        assert!(rec > 0 && index > rec, "index {index} ms, record {id} {rec} ms");
    }
}

/// The history archive's outbox (Redis only): while a node archives, every execution record written
/// in a final state (a claim's skip or misfire, a finish, a trigger's skip, a recorded outcome)
/// puts a copy of itself on the outbox in the same step, and no open record does; before, nothing
/// is pushed.
/// Only the lease holder trims, and only what it read. A clobbered outbox fails no write.
#[tokio::test]
async fn redis_final_records_go_on_the_archive_outbox_while_a_node_archives() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), "rota", "test", RETENTION_MS).await.expect("connect");
    let s: &dyn Store = &store;
    let fence = master(s).await;
    s.register(&node("n1", "i1"), 60_000, None).await.expect("register");
    let outbox = || async {
        let taken = store.archive_take(100).await.expect("take");
        assert!(taken.iter().all(|e| e.as_ref().is_some_and(|e| e.state.is_terminal())), "{taken:?}");
        taken.into_iter().flatten().map(|e| e.id).collect::<Vec<_>>()
    };
    // Off: a skipped claim pushes nothing.
    let at = |fire: &str| -> i64 { fire.rsplit('@').next().and_then(|t| t.parse().ok()).expect("a scheduled fire") };
    let off = at(&claimed_fire(s, &fence, "off", 1000, true).await);
    assert_eq!(
        s.claim(&fence, &[claim("off", off + 1000, Some(off + 2000), true)]).await.expect("c"),
        vec![ClaimOutcome::Skipped]
    );
    assert!(outbox().await.is_empty());
    assert!(store.archive_hold("n1:a", 10_000).await.expect("hold"));
    assert!(!store.archive_hold("n2:b", 10_000).await.expect("hold"), "one holder at a time");
    let mut want = Vec::new();
    // A claim: pending pushes nothing; skipped and misfired do.
    let fire = claimed_fire(s, &fence, "j", 1000, true).await;
    let sched = at(&fire);
    let skipped = claim("j", sched + 1000, Some(sched + 2000), true);
    want.push(skipped.exec.id.clone());
    let mut missed = claim("m", 1000, Some(2000), false);
    put(s, "m", 1000).await;
    missed.exec.state = ExecState::Misfired;
    want.push(missed.exec.id.clone());
    assert_eq!(
        s.claim(&fence, &[skipped, missed]).await.expect("claim"),
        vec![ClaimOutcome::Skipped, ClaimOutcome::Misfired]
    );
    // A manual fire skipped by the lock.
    let blocked = manual("j");
    let TriggerOutcome::Skipped(b) = s
        .trigger(&blocked, None, Concurrency::Forbid, 60_000, &FireOwn::default(), Priority::Normal)
        .await
        .expect("trigger")
    else {
        panic!("not skipped")
    };
    want.push(b.id);
    // Starting writes a running record: nothing; the finish: its id.
    assert_eq!(s.enqueue(&fence, &fire, "n1").await.expect("enqueue"), Enqueue::Queued);
    assert_eq!(s.take_queued("n1", Priority::ALL).await.expect("pop").map(|t| t.fire_id), Some(fire.clone()));
    let Start::Run(sf) = s.start(&fire, "n1", "i1", "fresh", MasterOnly::Anyway).await.expect("start") else {
        panic!("start")
    };
    let mut e = Execution::pending("j", fire.clone(), sf.sched_ms, "n1", 1);
    e.id = sf.exec_id.clone();
    e.state = ExecState::Succeeded;
    assert_eq!(s.finish(&e, "n1", "i1", Keep::DEFAULT, true).await.expect("finish"), Finish::Recorded);
    want.push(e.id.clone());
    // A recorded outcome (the reaper's `lost`): its id; an open record's update: nothing.
    let mut open = Execution::pending("j", "j@9000".into(), 9000, "n1", 1);
    assert!(s.create_execution(&open).await.expect("create"));
    open.state = ExecState::Running;
    assert!(s.update_execution(&open).await.expect("update"));
    open.state = ExecState::Lost;
    s.finish_execution(&open, false).await.expect("lost");
    want.push(open.id.clone());
    assert_eq!(outbox().await, want);
    // Only the holder trims, and only what it stored.
    assert!(!store.archive_ack("n2:b", 2, Some(&want[1])).await.expect("ack"));
    // Only what was read: the second entry is not the one named (Redis lost writes meanwhile).
    assert!(!store.archive_ack("n1:a", 2, Some(&want[0])).await.expect("ack"));
    assert_eq!(store.archive_backlog().await.expect("len"), want.len() as u64);
    assert!(store.archive_ack("n1:a", 2, Some(&want[1])).await.expect("ack"));
    assert_eq!(outbox().await, want[2..].to_vec());
    // A clobbered outbox: writes go on, the archiver is told, the hold refuses.
    let mut c = ::redis::Client::open(server.url()).and_then(|c| c.get_connection()).expect("redis");
    let _: () = ::redis::cmd("SET").arg(store.keys().archive()).arg("x").query(&mut c).expect("set");
    let _: () = ::redis::cmd("SET").arg(store.keys().archive_on()).arg("1").query(&mut c).expect("set");
    let next = claim("j", sched + 2000, Some(sched + 3000), false);
    assert_eq!(s.claim(&fence, &[next]).await.expect("c"), vec![ClaimOutcome::Claimed]);
    let mut b = blocked.clone();
    b.id = "not-archived".into();
    b.state = ExecState::Failed;
    s.finish_execution(&b, false).await.expect("a final record is written whatever the outbox is");
    assert!(store.archive_take(10).await.is_err());
    assert!(store.archive_hold("n1:a", 10_000).await.is_err());
}
