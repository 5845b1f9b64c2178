//! Issue 12, items 1 (authentication), 5 and 6, end to end against real processes: node-to-node
//! calls need the cluster secret whenever one is set, a clustered node will not listen beyond
//! loopback unauthenticated, no secret reaches a log line or an error message, readiness tells the
//! truth (a Redis that refuses writes, no master), and SIGHUP drains like SIGTERM.
mod common;

use std::process::Command;
use std::time::Duration;

use common::{eventually, Backend, RedisServer, TestNode};
use rota::pb;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

fn bearer<T>(msg: T, value: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", value.parse().expect("header"));
    r
}

fn submit(job: &str) -> pb::SubmitTasksRequest {
    pb::SubmitTasksRequest {
        epoch: 1,
        tasks: vec![pb::SubmitTaskRequest { job_id: job.into(), fire_id: format!("{job}@1"), ..Default::default() }],
    }
}

fn load() -> pb::ReportLoadRequest {
    pb::ReportLoadRequest {
        node_id: "peer".into(),
        load: Some(pb::NodeLoad { active_workers: 0, max_workers: 1, queue_depth: 0 }),
        measured_at: None,
    }
}

/// Runs the rota binary to its end: (exit code, stdout and stderr together).
fn rota(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(args)
        .env_remove("ROTA_CLUSTER_SECRET")
        .env_remove("ROTA_REDIS")
        .env_remove("ROTA_REDIS_SENTINEL_PASSWORD")
        .envs(env.iter().copied())
        .output()
        .expect("run rota");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// With a cluster secret and no tokens file, NodeService calls need the secret (before, the
/// secret was silently ignored and anyone could submit fires); the scheme name is case-insensitive;
/// refusals are logged, rate-limited, without the credential.
#[tokio::test]
async fn node_calls_need_the_cluster_secret_without_tokens() {
    let redis = RedisServer::start();
    let secret = "peer-secret-8Hd2";
    let node = TestNode::start_env(&Backend::Redis(redis.url()), "n1", &[], &[("ROTA_CLUSTER_SECRET", secret)]).await;
    let mut n = pb::node_service_client::NodeServiceClient::new(node.channel().await);
    let e = n.submit_tasks(submit("forged")).await.expect_err("no credential");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = n.submit_tasks(bearer(submit("forged"), "Bearer not-the-secret")).await.expect_err("wrong secret");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = n.report_load(load()).await.expect_err("ReportLoad without credential");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    for _ in 0..20 {
        let _ = n.submit_tasks(submit("forged")).await;
    }
    // With the secret (any case of the scheme name) the calls reach the service.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = n.submit_tasks(bearer(submit("j"), &format!("{scheme} {secret}"))).await;
        if let Err(e) = &r {
            assert!(!matches!(e.code(), Code::Unauthenticated | Code::PermissionDenied), "{scheme}: {e:?}");
        }
        n.report_load(bearer(load(), &format!("{scheme} {secret}"))).await.expect("ReportLoad with the secret");
    }
    // Nothing was stored for the forged fire, and the API for clients stays open (no tokens file).
    let mut c = node.client().await;
    c.list_jobs(pb::ListJobsRequest::default()).await.expect("clients need no token without a tokens file");
    node.wait_serving().await;
    let log = node.log();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("authentication refused")).collect();
    assert!(!refusals.is_empty(), "refusals are logged:\n{log}");
    assert!(refusals.len() <= 4, "rate-limited, not one line per refusal: {refusals:#?}");
    assert!(!log.contains(secret) && !log.contains("not-the-secret"), "a credential appears in the log");
}

/// A node with Redis (clustered) listening beyond loopback without a cluster secret or mutual TLS
/// refuses to start (exit 64, the key named), unless told to; `--check` says the same.
#[tokio::test]
async fn a_cluster_beyond_loopback_needs_a_secret() {
    let base = ["server", "--listen", "0.0.0.0:0", "--redis", "redis://127.0.0.1:1", "--node-id", "n1"];
    let (code, out) = rota(&base, &[]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("cluster_secret") && out.contains("allow_insecure_cluster"), "{out}");
    let (code, out) = rota(&[&base[..], &["--check"]].concat(), &[]);
    assert_eq!(code, Some(64), "{out}");
    let (code, out) = rota(&[&base[..], &["--check", "--check-offline", "--allow-insecure-cluster"]].concat(), &[]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) =
        rota(&[&base[..], &["--check", "--check-offline"]].concat(), &[("ROTA_CLUSTER_SECRET", "s3cret-for-check")]);
    assert_eq!(code, Some(0), "{out}");
    // An empty or blank secret is a mistake (an unset variable, a missing Kubernetes secret), not a secret.
    for blank in ["", "   "] {
        let (code, out) = rota(&[&base[..], &["--check"]].concat(), &[("ROTA_CLUSTER_SECRET", blank)]);
        assert_eq!(code, Some(64), "{blank:?}: {out}");
        assert!(out.contains("cluster_secret"), "{out}");
    }
    // Loopback stays easy: no secret needed.
    let (code, out) = rota(
        &["server", "--check", "--check-offline", "--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:1"],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
}

/// The Sentinels' own password comes from the environment (or the config file), never from a
/// flag; it is refused where no Sentinel is named, and blank; and no output shows it, nor the
/// primary's password, when the Sentinels cannot be reached.
#[tokio::test]
async fn the_sentinels_password_is_taken_from_the_environment_only_and_never_shown() {
    let (primary_pw, sentinel_pw) = ("primary-pw-4410", "sentinel-pw-9023");
    let sentinel_url = format!("rediss+sentinel://:{primary_pw}@127.0.0.1:1,127.0.0.1:2/main");
    let check = |url: &str, env: &[(&str, &str)]| {
        rota(&["server", "--check", "--listen", "127.0.0.1:0", "--node-id", "n1", "--redis", url], env)
    };
    let (code, out) = check(&sentinel_url, &[("ROTA_REDIS_SENTINEL_PASSWORD", sentinel_pw)]);
    assert_eq!(code, Some(69), "unreachable Sentinels: {out}");
    for secret in [primary_pw, sentinel_pw] {
        assert!(!out.contains(secret), "a password in the output: {out}");
    }
    let (code, out) = check("redis://127.0.0.1:1", &[("ROTA_REDIS_SENTINEL_PASSWORD", sentinel_pw)]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("redis_sentinel_password") && !out.contains(sentinel_pw), "{out}");
    let (code, out) = check(&sentinel_url, &[("ROTA_REDIS_SENTINEL_PASSWORD", " ")]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("redis_sentinel_password: is empty"), "{out}");
    let (code, out) = rota(&["server", "--check", "--redis-sentinel-password", sentinel_pw], &[]);
    assert_eq!(code, Some(2), "no such flag: {out}");
    assert!(!out.contains(sentinel_pw), "{out}");
}

/// The metrics listener on the gRPC port is refused at `--check` and at start.
#[tokio::test]
async fn metrics_port_equal_to_grpc_port_is_refused() {
    let port = common::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    for check in [true, false] {
        let mut args = vec!["server", "--listen", &listen, "--metrics-listen", &listen];
        if check {
            args.push("--check");
        }
        let (code, out) = rota(&args, &[]);
        assert_eq!(code, Some(64), "check={check}: {out}");
        assert!(out.contains("metrics_listen"), "{out}");
    }
}

/// SIGHUP drains like SIGTERM: NOT_SERVING, running work finishes, a log line, exit 0. (Before,
/// SIGHUP killed the process at once.)
#[tokio::test]
async fn sighup_drains_like_sigterm() {
    let mut node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let pid = nix::unistd::Pid::from_raw(node.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let deadline = std::time::Instant::now() + WAIT;
    while !node.exited() {
        assert!(std::time::Instant::now() < deadline, "the node did not exit after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = node.log();
    assert!(log.contains("SIGHUP") && log.contains("shutting down") && log.contains("stopped"), "{log}");
}

/// Scrapes /metrics and returns the value of the first sample named `name`.
async fn metric(addr: &str, name: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://{addr}/metrics")).await.ok()?.text().await.ok()?;
    body.lines().find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == name).then(|| v.parse().ok()).flatten()
    })
}

async fn readyz(addr: &str) -> Option<u16> {
    Some(reqwest::get(format!("http://{addr}/readyz")).await.ok()?.status().as_u16())
}

const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

/// A Redis under `maxmemory` with `noeviction` answers reads and even the heartbeat script, but
/// refuses new writes: nothing can fire. The node says NOT_SERVING and /readyz 503, counts the
/// failing scheduler ticks, and serves again once Redis has room.
#[tokio::test]
async fn a_redis_refusing_writes_is_not_ready() {
    let redis = RedisServer::start();
    let m = format!("127.0.0.1:{}", common::free_port());
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--metrics-listen", &m]).await;
    let mut c = node.client().await;
    let j = common::job("tick", "* * * * * *", "noop", serde_json::json!(null));
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    eventually(WAIT, "a fire", || {
        let mut c = c.clone();
        async move { (!common::executions(&mut c, "tick").await.is_empty()).then_some(()) }
    })
    .await;
    assert_eq!(readyz(&m).await, Some(200));
    assert_eq!(metric(&m, "rota_master_present").await, Some(1.0));
    let mut r = ::redis::Client::open(redis.url()).and_then(|c| c.get_connection()).expect("redis");
    let info: String = ::redis::cmd("INFO").arg("memory").query(&mut r).expect("info");
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    let _: () = ::redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("noeviction").query(&mut r).expect("p");
    let _: () = ::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(used + 2_000_000).query(&mut r).expect("max");
    let chunk = "z".repeat(64 * 1024);
    let mut filled = 0;
    for i in 0..1000 {
        let r: ::redis::RedisResult<()> = ::redis::cmd("SET").arg(format!("filler:{i}")).arg(&chunk).query(&mut r);
        if r.is_err() {
            filled = i;
            break;
        }
    }
    assert!(filled > 0, "Redis never filled up");
    // Full now, but used memory hovers around the limit (buffers come and go): put the limit well
    // under it, so every new write is refused, not every other one.
    let info: String = ::redis::cmd("INFO").arg("memory").query(&mut r).expect("info");
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    let _: () = ::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(used - 512 * 1024).query(&mut r).expect("max");
    eventually(WAIT, "NOT_SERVING while Redis refuses writes", || async {
        (node.health().await == Some(NOT_SERVING)).then_some(())
    })
    .await;
    assert_eq!(readyz(&m).await, Some(503));
    let failures = eventually(WAIT, "failed ticks counted", || async {
        metric(&m, "rota_scheduler_tick_failures_total").await.filter(|f| *f > 0.0)
    })
    .await;
    assert!(failures > 0.0);
    eventually(WAIT, "the time since the last good tick grows", || async {
        metric(&m, "rota_scheduler_seconds_since_last_tick").await.filter(|age| *age > 1.5)
    })
    .await;
    assert!(node.log().contains("store refuses writes"), "said so in the log");
    for i in 0..filled {
        let _: () = ::redis::cmd("DEL").arg(format!("filler:{i}")).query(&mut r).expect("del");
    }
    let _: () = ::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).query(&mut r).expect("room again");
    node.wait_serving().await;
    assert_eq!(readyz(&m).await, Some(200));
}

/// No node can take the master lease (here a planted lease of a node that does not exist): past the
/// failover bound every node says NOT_SERVING, `rota_master_present` is 0, and a `no_master` alert
/// is raised at WARN; once a master exists again, the node serves.
#[tokio::test]
async fn no_master_past_the_failover_bound_is_not_ready_and_alerts() {
    let redis = RedisServer::start();
    let mut r = ::redis::Client::open(redis.url()).and_then(|c| c.get_connection()).expect("redis");
    let lease = "{rota:default:0}:lease";
    let _: () = ::redis::cmd("SET").arg(lease).arg("ghost:1:inc0").arg("PX").arg(60_000).query(&mut r).expect("set");
    let m = format!("127.0.0.1:{}", common::free_port());
    let flags =
        ["--metrics-listen", &m, "--lease-ttl-ms", common::LEASE_TTL_MS, "--lease-renew-ms", common::LEASE_RENEW_MS];
    let node = TestNode::spawn(&Backend::Redis(redis.url()), "n1", &flags);
    eventually(WAIT, "NOT_SERVING without a master", || async {
        (node.health().await == Some(NOT_SERVING) && node.log().contains("alert=\"no_master\"")).then_some(())
    })
    .await;
    assert_eq!(readyz(&m).await, Some(503));
    assert_eq!(metric(&m, "rota_master_present").await, Some(0.0));
    assert!(node.log().lines().any(|l| l.contains("WARN") && l.contains("no master")), "{}", node.log());
    let _: () = ::redis::cmd("DEL").arg(lease).query(&mut r).expect("del");
    node.wait_serving().await;
    assert_eq!(metric(&m, "rota_master_present").await, Some(1.0));
    assert_eq!(readyz(&m).await, Some(200));
}

/// A Redis outage longer than the failover bound says nothing about the master: the node is
/// NOT_SERVING while Redis is down (the store does not answer), but raises no `no_master` alert, and
/// serves again once Redis is back and a master holds the lease.
#[tokio::test]
async fn a_redis_outage_raises_no_no_master_alert() {
    let mut redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    redis.kill();
    eventually(WAIT, "NOT_SERVING while Redis is down", || async {
        (node.health().await == Some(NOT_SERVING)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.restart();
    node.wait_serving().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!node.log().contains("no_master"), "{}", node.log());
}

/// Known secrets (the cluster secret, a Redis password, a webhook URL's path and query, a token,
/// a tokens file's first line, a job argument) sent through failure paths (bad config files, a
/// failing webhook, wrong tokens, a wrong Redis password): none appears in any log line or error.
#[tokio::test]
async fn no_secret_reaches_a_log_or_an_error() {
    const CLUSTER: &str = "clu-s3cret-7Qx9";
    const REDIS_PW: &str = "redis-pw-K3vz";
    const HOOK_PATH: &str = "hookpath-T0k3n";
    const HOOK_QUERY: &str = "hookq-S3cr3t";
    const TOKEN_LINE: &str = "raw-token-line-Zq8";
    const ADMIN: &str = "admin-tok-Lm4w";
    const WRONG: &str = "wrong-tok-Pp2r";
    const JOB_ARG: &str = "job-arg-s3cret-Vv";
    let secrets = [CLUSTER, REDIS_PW, HOOK_PATH, HOOK_QUERY, TOKEN_LINE, ADMIN, WRONG, JOB_ARG];
    let mut seen: Vec<(String, String)> = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf8").to_string()
    };

    // Config files that do not parse or do not validate.
    let configs = [
        format!("cluster_secret = \"{CLUSTER}\"\nredis = \"redis://rota:{REDIS_PW}@127.0.0.1:1\n"),
        format!("redis = \"redis://rota:{REDIS_PW}@127.0.0.1:1\"\nworkers = \"{CLUSTER}\"\n"),
        format!("cluster_secret = {{ x = \"{CLUSTER}\" }}\n"),
        format!("alert_webhook = \"ftp://hooks.example.com/{HOOK_PATH}?t={HOOK_QUERY}\"\n"),
        format!("alert_webhook = \"https://hooks.example.com/{HOOK_PATH}?t={HOOK_QUERY}\"\nworkers = 0\n"),
        format!("{CLUSTER}\n"),
    ];
    for (i, text) in configs.iter().enumerate() {
        let path = file(&format!("bad{i}.toml"), text);
        let (code, out) = rota(&["server", "--check", "--config", &path], &[]);
        assert_eq!(code, Some(64), "config {i}: {out}");
        assert!(out.contains("line") || out.contains("config "), "config {i} names where: {out}");
        seen.push((format!("config {i}"), out));
    }
    // A tokens file that is a raw token, and one with a bad entry.
    let raw = file("raw-tokens.toml", &format!("{TOKEN_LINE}\n"));
    let bad_entry =
        file("bad-tokens.toml", &format!("[[token]]\nname = \"ci\"\nrole = \"root\"\nsha256 = \"{TOKEN_LINE}\"\n"));
    for (what, path) in [("raw tokens file", &raw), ("bad tokens entry", &bad_entry)] {
        let (code, out) = rota(&["server", "--check", "--tokens-file", path], &[]);
        assert_eq!(code, Some(64), "{what}: {out}");
        seen.push((what.into(), out));
    }
    // A jobs file with a secret in a job's arguments: the job and field are named, the value is not.
    let jobs = [
        format!("[[job]]\nid = \"j\"\ncron = \"* * * * * *\"\nhandler = \"http\"\nargs = [\"GET\", \"ftp://h/{JOB_ARG}\"]\n"),
        format!("[[job]]\nid = \"j\"\ncron = \"* * * * * *\"\nhandler = \"http\"\nargs = [\"GET\", \"http://h/{JOB_ARG}]\n"),
    ];
    for (i, text) in jobs.iter().enumerate() {
        let path = file(&format!("jobs{i}.toml"), text);
        let (code, out) = rota(&["server", "--check", "--jobs", &path], &[]);
        assert_eq!(code, Some(64), "jobs {i}: {out}");
        assert!(out.contains("jobs_file"), "jobs {i}: {out}");
        seen.push((format!("jobs {i}"), out));
    }
    // The help says where a Redis password belongs.
    let (_, help) = rota(&["server", "--help"], &[]);
    assert!(help.contains("ROTA_REDIS") && help.contains("ps"), "{help}");

    // A real cluster node with all the secrets, through failing paths.
    let args = ["--requirepass", "admin-pw", "--user", "rota", "on", &format!(">{REDIS_PW}"), "~*", "&*", "+@all"];
    let redis = RedisServer::start_with(&args, &format!("rota:{REDIS_PW}@"));
    let closed = common::free_port();
    let hook = format!("http://127.0.0.1:{closed}/services/{HOOK_PATH}?token={HOOK_QUERY}");
    let h = rota::api::auth::hex(&rota::api::auth::hash(ADMIN));
    let tokens = file("tokens.toml", &format!("[[token]]\nname = \"ci\"\nrole = \"admin\"\nsha256 = \"{h}\"\n"));
    let env = [("ROTA_CLUSTER_SECRET", CLUSTER), ("ROTA_ALERT_WEBHOOK", hook.as_str())];
    // The failing http job below calls a closed port on loopback, which http jobs reach only when listed.
    let args = ["--tokens-file", &tokens, "--http-allow", "127.0.0.1"];
    let mut node = TestNode::start_env(&Backend::Redis(redis.url()), "n1", &args, &env).await;
    let mut c = node.client().await;
    let mut errors = Vec::new();
    for auth in [format!("Bearer {WRONG}"), format!("BEARER {WRONG}"), WRONG.to_string(), format!("Basic {WRONG}")] {
        let e = c.list_jobs(bearer(pb::ListJobsRequest::default(), &auth)).await.expect_err("wrong token");
        errors.push(format!("{e:?}"));
    }
    let mut n = pb::node_service_client::NodeServiceClient::new(node.channel().await);
    let e = n.submit_tasks(bearer(submit("x"), &format!("Bearer {ADMIN}"))).await.expect_err("not a node");
    errors.push(format!("{e:?}"));
    // A job that fails, so an alert goes to the (unreachable) webhook and is retried until given up.
    let mut j =
        common::job("fails", "0 0 3 29 2 *", "http", serde_json::json!([format!("http://127.0.0.1:{closed}/")]));
    j.retries = 0;
    c.put_job(bearer(pb::PutJobRequest { job: Some(j) }, &format!("Bearer {ADMIN}"))).await.expect("put");
    let trig = pb::TriggerJobRequest { id: "fails".into(), idempotency_key: String::new(), ..Default::default() };
    c.trigger_job(bearer(trig, &format!("Bearer {ADMIN}"))).await.expect("trigger");
    eventually(Duration::from_secs(40), "the webhook given up", || async {
        node.log().contains("alert webhook gave up").then_some(())
    })
    .await;
    assert!(node.log().contains(&format!("127.0.0.1:{closed}")), "the webhook is named by host and port");
    // A node with a wrong Redis password.
    let wrong = format!("redis://rota:{WRONG}@127.0.0.1:{}", redis.port);
    let bad = TestNode::spawn_env(&Backend::Redis(wrong), "n2", &[], &[("ROTA_CLUSTER_SECRET", CLUSTER)]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.terminate();
    seen.push(("node log".into(), node.log()));
    seen.push(("node with a wrong Redis password".into(), bad.log()));
    seen.push(("errors returned to clients".into(), errors.join("\n")));
    for (what, text) in &seen {
        for s in secrets {
            assert!(!text.contains(s), "{s} appears in {what}:\n{text}");
        }
    }
}

/// Two processes given one node id: the second refuses to start (exit 64, the id named) once the
/// first's heartbeat has not lapsed within two node TTLs, and the first keeps serving.
#[tokio::test]
async fn a_second_process_with_a_live_node_id_refuses_to_start() {
    let redis = RedisServer::start();
    let first = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let url = redis.url();
    let (code, out) = tokio::task::spawn_blocking(move || {
        let args = ["server", "--node-id", "n1", "--listen", "127.0.0.1:0", "--redis", &url];
        rota(&[&args[..], &["--heartbeat-ms", "200", "--node-ttl-ms", "1000"]].concat(), &[])
    })
    .await
    .expect("join");
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("node_id 'n1' is in use by another live process"), "{out}");
    assert_eq!(first.health().await, Some(1), "the first node keeps serving");
}
