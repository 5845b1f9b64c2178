//! The example clients in other languages, run against a live node: each puts a job, triggers it,
//! watches its execution to the end and lists executions. Python needs grpcio and grpcio-tools;
//! Node needs `npm ci` in examples/node (./test.sh installs both).
mod common;

use common::{Backend, TestNode};

fn run_client(program: &str, script: &str, addr: &str) -> serde_json::Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(program)
        .arg(format!("{root}/{script}"))
        .arg(addr)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed (see the README for its dependencies):\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

fn check(summary: &serde_json::Value) {
    let states: Vec<&str> = summary["states"].as_array().expect("states").iter().filter_map(|s| s.as_str()).collect();
    assert_eq!(states.last(), Some(&"EXECUTION_STATE_SUCCEEDED"), "{summary}");
    let listed = summary["listed"].as_array().expect("listed");
    assert!(listed.contains(&summary["execution"]), "{summary}");
}

#[tokio::test]
async fn python_client() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    check(&run_client("python3", "examples/python/client.py", &node.addr));
}

#[tokio::test]
async fn node_client() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    check(&run_client("node", "examples/node/client.js", &node.addr));
}
