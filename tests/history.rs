//! The history store in PostgreSQL (`history_postgres`): a real PostgreSQL started by the harness
//! (`common::postgres`), real Redis, real nodes. Finished executions reach PostgreSQL; listings and
//! GetExecution read one history across Redis and PostgreSQL (filters, pages, records Redis has
//! trimmed); PostgreSQL down loses nothing and the archive catches up, also when the archiving node
//! dies; bad input is refused naming the field.
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::postgres::PostgresServer;
use common::{eventually, job, Backend, RedisServer, TestNode};
use rota::pb;
use serde_json::json;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);
const TAG: &str = "{rota:default:0}";

async fn put(node: &TestNode, id: &str, keep_last: u32) {
    let mut j = job(id, "* * * * * *", "noop", json!(null));
    j.keep_last = keep_last;
    node.client().await.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
}

fn archived(pg: &PostgresServer, job: &str) -> usize {
    pg.psql("rota", &format!("SELECT count(*) FROM rota_executions WHERE job_id = '{job}'")).parse().expect("count")
}

/// Every page of a listing, following the tokens.
async fn all_pages(node: &TestNode, mut req: pb::ListExecutionsRequest) -> Vec<pb::Execution> {
    let mut c = node.client().await;
    let mut out = Vec::new();
    loop {
        let r = c.list_executions(req.clone()).await.expect("list").into_inner();
        out.extend(r.executions);
        if r.next_page_token.is_empty() {
            return out;
        }
        req.page_token = r.next_page_token;
    }
}

fn ids(v: &[pb::Execution]) -> Vec<String> {
    v.iter().map(|e| e.id.clone()).collect()
}

#[tokio::test]
async fn finished_executions_reach_postgres_and_list_as_one_history() {
    let redis = RedisServer::start();
    let pg = PostgresServer::start();
    let n = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--history-postgres", &pg.url()]).await;
    // Redis keeps two of this job's executions; PostgreSQL keeps them all.
    put(&n, "h", 2).await;
    eventually(WAIT, "eight executions archived", || async { (archived(&pg, "h") >= 8).then_some(()) }).await;
    let cut = rota::store::now_ms() - 1500;
    let frozen = |page_size| pb::ListExecutionsRequest {
        job_id: "h".into(),
        page_size,
        scheduled_before: Some(rota::pb::timestamp(cut)),
        ..Default::default()
    };
    let whole = all_pages(&n, frozen(1000)).await;
    assert!(whole.len() >= 6, "{} executions listed", whole.len());
    let listed = ids(&whole);
    let mut sorted = listed.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(listed, sorted, "newest first, each once");
    // Pages of two join up to the same list.
    assert_eq!(ids(&all_pages(&n, frozen(2)).await), listed);
    // Redis no longer has the oldest, but GetExecution still finds it.
    let oldest = listed.last().expect("one").clone();
    assert!(!in_redis(redis.port, &oldest), "the oldest is still in Redis: the test shows nothing");
    let mut c = n.client().await;
    let got = c.get_execution(pb::GetExecutionRequest { id: oldest.clone() }).await.expect("get").into_inner();
    assert_eq!(got.execution.map(|e| e.id), Some(oldest));
    // Filters apply to both parts.
    let by_node = |node: &str| pb::ListExecutionsRequest { node_id: node.into(), ..frozen(1000) };
    assert_eq!(ids(&all_pages(&n, by_node("n1")).await), listed);
    assert!(all_pages(&n, by_node("elsewhere")).await.is_empty());
    let succeeded = pb::ListExecutionsRequest { state: pb::ExecutionState::Succeeded as i32, ..frozen(1000) };
    assert_eq!(ids(&all_pages(&n, succeeded).await), listed);
    let newest_three = pb::ListExecutionsRequest {
        scheduled_after: Some(whole[2].scheduled_time.expect("scheduled")),
        ..frozen(1000)
    };
    assert_eq!(ids(&all_pages(&n, newest_three).await), listed[..3].to_vec());
    // Bad input names the field.
    for (req, field) in [
        (pb::ListExecutionsRequest { node_id: "a b".into(), ..Default::default() }, "node_id"),
        (
            pb::ListExecutionsRequest {
                scheduled_after: Some(rota::pb::timestamp(cut)),
                scheduled_before: Some(rota::pb::timestamp(cut)),
                ..Default::default()
            },
            "scheduled_before",
        ),
    ] {
        let e = c.list_executions(req).await.expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{e:?}");
    }
}

/// PostgreSQL goes down for a while and the node archiving then dies: fires go on, the outbox
/// keeps their records (also those a job's cap deletes from Redis meanwhile), and once PostgreSQL
/// is back the other node archives every one of them.
#[tokio::test]
async fn postgres_down_loses_nothing_and_another_node_catches_up() {
    let redis = RedisServer::start();
    let mut pg = PostgresServer::start();
    let b = Backend::Redis(redis.url());
    let flags = ["--history-postgres", &pg.url()];
    let mut nodes = vec![TestNode::start(&b, "n1", &flags).await, TestNode::start(&b, "n2", &flags).await];
    // Job a keeps two executions in Redis: its cap deletes records while PostgreSQL is down, and
    // the archive must have them all the same.
    let jobs = ["a", "b", "c"];
    for (j, keep) in jobs.into_iter().zip([2, 0, 0]) {
        put(&nodes[0], j, keep).await;
    }
    eventually(WAIT, "archiving", || async { (archived(&pg, "a") >= 2).then_some(()) }).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let backlog: Option<i64> = common::redis_cmd(redis.port, &["LLEN", &format!("{TAG}:archive")]);
    assert!(backlog.is_some_and(|n| n >= 6), "the outbox keeps what could not be archived: {backlog:?}");
    for n in &nodes {
        n.wait_serving().await;
    }
    // The node holding the archive lease dies just as PostgreSQL comes back.
    let holder: String = common::redis_cmd(redis.port, &["GET", &format!("{TAG}:archive:lease")]).expect("a holder");
    let dying = nodes.iter().position(|n| holder.starts_with(&format!("{}:", n.node_id))).expect("holder is a node");
    nodes[dying].kill();
    pg.restart();
    let alive = &nodes[1 - dying];
    let mut c = alive.client().await;
    for j in jobs {
        c.pause_job(pb::PauseJobRequest { id: j.into(), ..Default::default() }).await.expect("pause");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Every final record Redis holds is in PostgreSQL, once.
    let finals = || -> BTreeSet<String> {
        let ids: Vec<String> =
            common::redis_cmd(redis.port, &["ZRANGE", &format!("{TAG}:execs"), "0", "-1"]).expect("index");
        ids.into_iter().filter(|id| final_in_redis(redis.port, id)).collect()
    };
    let want = finals();
    assert!(want.len() >= 10, "{} final records", want.len());
    let got = eventually(WAIT, "the archive catches up", || async {
        let rows = pg.psql("rota", "SELECT id FROM rota_executions ORDER BY id");
        let got: BTreeSet<String> = rows.lines().map(str::to_string).collect();
        want.is_subset(&got).then_some(got)
    })
    .await;
    let rows: usize = pg.psql("rota", "SELECT count(*) FROM rota_executions").parse().expect("count");
    assert_eq!(rows, got.len(), "a record stored twice");
    // The capped job's records, deleted from Redis meanwhile, are archived like the others'.
    let (a, b) = (archived(&pg, "a"), archived(&pg, "b"));
    assert!(a + 2 >= b && b >= 5, "job a: {a} archived, job b: {b}");
    let backlog: Option<i64> = common::redis_cmd(redis.port, &["LLEN", &format!("{TAG}:archive")]);
    assert_eq!(backlog, Some(0), "the outbox is drained");
}

/// The history store needs Redis, a PostgreSQL URL, and days in range; errors name the key and
/// never show the URL's password.
#[tokio::test]
async fn bad_history_settings_are_refused_naming_the_key() {
    let rota = env!("CARGO_BIN_EXE_rota");
    for (args, want) in [
        (
            vec!["--history-postgres", "postgres://u:pw-3321@h/db"],
            "config history_postgres: the history store needs Redis",
        ),
        (
            vec!["--redis", "redis://127.0.0.1:1", "--history-postgres", "mysql://u:pw-3321@h/db"],
            "config history_postgres: must start with postgres://",
        ),
        (
            vec!["--redis", "redis://127.0.0.1:1", "--history-postgres", "postgres://u:pw-3321@h/db?sslmode=require"],
            "not built yet",
        ),
        (
            vec![
                "--redis",
                "redis://127.0.0.1:1",
                "--history-postgres",
                "postgres://h/db",
                "--history-retention-days",
                "0",
            ],
            "config history_retention_days: 0 is not in 1..=3650",
        ),
    ] {
        let out = std::process::Command::new(rota)
            .args(["server", "--check", "--check-offline", "--listen", "127.0.0.1:0"])
            .args(&args)
            .env_remove("ROTA_HISTORY_POSTGRES")
            .env_remove("ROTA_REDIS")
            .output()
            .expect("run rota");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(64), "{args:?}: {text}");
        assert!(text.contains(want), "{args:?}: {text}");
        assert!(!text.contains("pw-3321"), "{args:?}: {text}");
    }
}

/// The archiving node dies right after PostgreSQL committed a batch and before it trimmed the
/// outbox (failpoint `history_after_store`): the other node takes the lease and stores that batch
/// again, as the same rows; nothing is lost or stored twice.
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn an_archiver_killed_between_commit_and_trim_stores_nothing_twice() {
    let redis = RedisServer::start();
    let pg = PostgresServer::start();
    let b = Backend::Redis(redis.url());
    let ports = [common::free_port(), common::free_port()];
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let metrics = format!("127.0.0.1:{port}");
        let args = ["--history-postgres", &pg.url(), "--metrics-listen", &metrics];
        nodes.push(TestNode::start(&b, &format!("n{}", i + 1), &args).await);
    }
    for j in ["a", "b"] {
        put(&nodes[0], j, 0).await;
    }
    eventually(WAIT, "archiving", || async { (archived(&pg, "a") >= 1).then_some(()) }).await;
    let holder: String = common::redis_cmd(redis.port, &["GET", &format!("{TAG}:archive:lease")]).expect("a holder");
    let i = nodes.iter().position(|n| holder.starts_with(&format!("{}:", n.node_id))).expect("holder is a node");
    let url = format!("http://127.0.0.1:{}/failpoints/history_after_store", ports[i]);
    let r = reqwest::Client::new().put(&url).body("1*return").send().await.expect("arm");
    assert!(r.status().is_success(), "{}", r.status());
    eventually(WAIT, "the archiver dies after its commit", || {
        let exited = nodes[i].exited();
        async move { exited.then_some(()) }
    })
    .await;
    let mut c = nodes[1 - i].client().await;
    for j in ["a", "b"] {
        c.pause_job(pb::PauseJobRequest { id: j.into(), ..Default::default() }).await.expect("pause");
    }
    eventually(WAIT, "the other node drains the outbox", || async {
        let n: Option<i64> = common::redis_cmd(redis.port, &["LLEN", &format!("{TAG}:archive")]);
        (n == Some(0)).then_some(())
    })
    .await;
    let ids: Vec<String> = common::redis_cmd(redis.port, &["ZRANGE", &format!("{TAG}:execs"), "0", "-1"]).expect("ids");
    let rows = pg.psql("rota", "SELECT id FROM rota_executions");
    let stored: BTreeSet<&str> = rows.lines().collect();
    assert_eq!(stored.len(), rows.lines().count(), "a row stored twice");
    for id in &ids {
        if final_in_redis(redis.port, id) {
            assert!(stored.contains(id.as_str()), "{id} is final in Redis but not archived");
        }
    }
    assert!(nodes[i].log().contains("history_after_store"), "the failpoint was not what stopped it");
}

/// A batch the archive takes from the outbox may hold one execution twice (a final record written
/// again) and output PostgreSQL's text cannot hold (NUL): neither may stop the archive. The last
/// copy wins; NUL is archived as U+FFFD.
#[tokio::test]
async fn a_batch_with_a_record_twice_and_nul_output_is_stored() {
    let pg = PostgresServer::start();
    let store = rota::history::Postgres::new(&pg.url(), "rota:t".into()).expect("url");
    let mut first = rota::execution::Execution::pending("j", "j@1000".into(), 1000, "n1", 1);
    first.state = rota::execution::ExecState::Failed;
    let mut again = first.clone();
    again.state = rota::execution::ExecState::Lost;
    let mut nul = rota::execution::Execution::pending("j", "j@2000".into(), 2000, "n1", 1);
    nul.state = rota::execution::ExecState::Succeeded;
    nul.output = "a\0b".into();
    let stored = store.store(&[first.clone(), nul.clone(), again]).await.expect("store");
    assert_eq!((stored.written, stored.refused.len()), (2, 0), "{stored:?}");
    let got = store.get(&first.id).await.expect("get").expect("stored");
    assert_eq!(got.state, rota::execution::ExecState::Lost, "the last copy wins");
    let got = store.get(&nul.id).await.expect("get").expect("stored");
    assert_eq!(got.output, "a\u{fffd}b");
}

/// Whether Redis holds execution `id`'s record in a final state: the fire hash holding its outcome,
/// or a record kept apart (PROTOCOL 4.2).
fn final_in_redis(port: u16, id: &str) -> bool {
    let (hash, rec) = records_in_redis(port, id);
    matches!(hash.as_slice(), [Some(e), Some(_)] if e == id)
        || rec.is_some_and(|r| !r.contains("\"state\":\"pending\"") && !r.contains("\"state\":\"running\""))
}

/// Whether Redis holds any record of execution `id`.
fn in_redis(port: u16, id: &str) -> bool {
    let (hash, rec) = records_in_redis(port, id);
    matches!(hash.first(), Some(Some(e)) if e == id) || rec.is_some()
}

/// Execution `id`'s fire hash's `exec` and `ended`, and its record kept apart.
fn records_in_redis(port: u16, id: &str) -> (Vec<Option<String>>, Option<String>) {
    let fire = rota::execution::fire_of_execution(id).unwrap_or_default();
    let hash = common::redis_cmd(port, &["HMGET", &format!("{TAG}:fire:{fire}"), "exec", "ended"]).unwrap_or_default();
    (hash, common::redis_cmd(port, &["GET", &format!("{TAG}:exec:{id}")]))
}
