//! deploy/ is checked as far as this machine can (no container engine or cluster here): YAML
//! parses, Kubernetes objects and compose services have what they need, the ConfigMap's config is
//! accepted by `rota server --check`, the systemd unit passes `systemd-analyze verify`.
//! The checks live in deploy/validate.py (Python with PyYAML).
#[test]
fn deploy_manifests_validate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .arg(format!("{root}/deploy/validate.py"))
        .env("ROTA_BIN", env!("CARGO_BIN_EXE_rota"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): install python3 with PyYAML"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "deploy/validate.py failed:\n{text}");
    assert!(text.contains("0 failed"), "{text}");
}

/// The documented example config loads, validates, and `rota server --check` accepts it.
#[test]
fn example_config_passes_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["server", "--check", "--config", &format!("{root}/deploy/rota.example.toml")])
        .output()
        .expect("run rota");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["server", "--check", "--jobs", &format!("{root}/deploy/jobs.example.toml")])
        .output()
        .expect("run rota");
    assert!(out.status.success(), "jobs example: {}", String::from_utf8_lossy(&out.stderr));
}
