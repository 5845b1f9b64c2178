#!/usr/bin/env python3
"""Checks what this machine can check of deploy/ (there is no container engine or cluster here):
the YAML parses, every Kubernetes object has the fields it needs, compose services are complete,
the config examples load in rota itself (`rota server --config ... --check`-like: see tests), and the
systemd unit passes `systemd-analyze verify` when systemd-analyze exists. Exits non-zero on any
problem and prints one line per check."""
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail and not ok else ""))
    if not ok:
        failures.append(what)


docs = [d for d in yaml.safe_load_all(open(os.path.join(HERE, "k8s", "rota.yaml"))) if d]
kinds = {d["kind"]: d for d in docs}
check("k8s: objects present", set(kinds) >= {"ConfigMap", "Secret", "Service", "StatefulSet", "PodDisruptionBudget"},
      str(sorted(kinds)))
for d in docs:
    check(f"k8s {d['kind']}/{d.get('metadata', {}).get('name')}: apiVersion, kind, metadata.name",
          bool(d.get("apiVersion")) and bool(d.get("metadata", {}).get("name")))
sts = kinds.get("StatefulSet", {})
pod = sts.get("spec", {}).get("template", {}).get("spec", {})
c = (pod.get("containers") or [{}])[0]
check("k8s StatefulSet: selector matches template labels",
      sts["spec"]["selector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items())
check("k8s container: grpc readiness probe on grpc.health.v1", "grpc" in c.get("readinessProbe", {}))
check("k8s container: liveness probe", "livenessProbe" in c)
check("k8s container: non-root", pod.get("securityContext", {}).get("runAsNonRoot") is True)
check("k8s container: grace period covers shutdown_grace_ms", pod.get("terminationGracePeriodSeconds", 0) >= 30)
mounted = {m["name"] for m in c.get("volumeMounts", [])}
declared = {v["name"] for v in pod.get("volumes", [])}
check("k8s container: every mount has a volume", mounted <= declared, f"{mounted - declared}")
cm = kinds["ConfigMap"]["data"]["rota.toml"]
try:
    import tomllib
    tomllib.loads(cm)
    check("k8s ConfigMap rota.toml is TOML", True)
except Exception as e:  # noqa: BLE001
    check("k8s ConfigMap rota.toml is TOML", False, str(e))

# rota itself checks the ConfigMap's config (the files it names do not exist here, so point them at
# stand-ins with the same shape; no Redis here: --check-offline).
rota = os.environ.get("ROTA_BIN") or shutil.which("rota")
for cand in ("../target/debug/rota", "../target/release/rota"):
    p = os.path.join(HERE, cand)
    if not rota and os.path.exists(p):
        rota = p
if rota:
    with tempfile.TemporaryDirectory() as d:
        tokens = os.path.join(d, "tokens.toml")
        open(tokens, "w").write(kinds["Secret"]["stringData"]["tokens.toml"])
        conf = os.path.join(d, "rota.toml")
        open(conf, "w").write(cm.replace("/etc/rota-secret/tokens.toml", tokens))
        env = dict(os.environ, ROTA_CLUSTER_SECRET="x", ROTA_REDIS="redis://127.0.0.1:6379")
        r = subprocess.run([rota, "server", "--check", "--check-offline", "--config", conf], capture_output=True, text=True, env=env)
        check("k8s ConfigMap + Secret: accepted by `rota server --check`", r.returncode == 0, r.stderr.strip())
else:
    check("k8s ConfigMap: rota binary not built here (not checked by rota)", True)

compose = yaml.safe_load(open(os.path.join(HERE, "compose.yaml")))
services = compose.get("services", {})
check("compose: redis and three nodes", {"redis", "node-1", "node-2", "node-3"} <= set(services))
for name in ("node-1", "node-2", "node-3"):
    s = services[name]
    check(f"compose {name}: image or build, command, depends on redis",
          ("image" in s or "build" in s) and "command" in s and "redis" in s.get("depends_on", {}))

redis_conf = open(os.path.join(HERE, "redis.conf")).read()
for line in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
    check(f"redis.conf: {line}", line in redis_conf)

dockerfile = open(os.path.join(HERE, "Dockerfile")).read()
check("Dockerfile: multi-stage, non-root user", dockerfile.count("FROM ") >= 2 and "USER " in dockerfile)

unit = os.path.join(HERE, "systemd", "rota.service")
analyze = shutil.which("systemd-analyze")
if analyze:
    with tempfile.TemporaryDirectory() as d:
        # verify needs the ExecStart binary to exist: point it at a stand-in.
        text = open(unit).read().replace("/usr/local/bin/rota", shutil.which("true") or "/bin/true")
        path = os.path.join(d, "rota.service")
        open(path, "w").write(text)
        r = subprocess.run([analyze, "verify", path], capture_output=True, text=True)
        problems = [l for l in (r.stdout + r.stderr).splitlines() if "rota.service" in l]
        check("systemd unit: systemd-analyze verify", r.returncode == 0 and not problems, "; ".join(problems))
else:
    check("systemd unit: systemd-analyze not available here (not verified)", True)

print(f"{len(failures)} failed")
sys.exit(1 if failures else 0)
