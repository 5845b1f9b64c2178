#!/usr/bin/env bash
# Starts a local cluster: one redis-server and three rota nodes, output prefixed by node.
# Ctrl-C stops them all.
#   deploy/local-cluster.sh            # builds rota (release) first
#   NODES=5 deploy/local-cluster.sh    # more nodes
#   REDIS_PORT=6390 BASE_PORT=7701 deploy/local-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NODES="${NODES:-3}"
REDIS_PORT="${REDIS_PORT:-6390}"
BASE_PORT="${BASE_PORT:-7701}"
command -v redis-server >/dev/null || { echo "redis-server not found: apt-get install redis-server" >&2; exit 1; }
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/rota"
DATA="$(mktemp -d)"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup INT TERM EXIT

# Process substitution (not a pipe) so that $! is the server's pid, which Ctrl-C signals.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA" --appendonly yes --appendfsync everysec \
  --maxmemory-policy noeviction --save "" > >(sed -u "s/^/[redis] /") 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

for i in $(seq 1 "$NODES"); do
  port=$((BASE_PORT + i - 1))
  "$BIN" server --listen "127.0.0.1:$port" --node-id "node-$i" --redis "redis://127.0.0.1:$REDIS_PORT" \
    ${JOBS:+--jobs "$JOBS"} > >(sed -u "s/^/[node-$i] /") 2>&1 &
  pids+=($!)
done
echo "cluster up: redis 127.0.0.1:$REDIS_PORT, nodes on ports $BASE_PORT..$((BASE_PORT + NODES - 1)). Ctrl-C stops all."
echo "try: $BIN nodes --endpoint 127.0.0.1:$BASE_PORT"
wait
