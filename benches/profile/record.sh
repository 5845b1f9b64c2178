#!/bin/bash
# Records where Redis's CPU goes while a benchmark runs (PROTOCOL 3.18): starts the command, finds
# the redis-server it starts (one not running before), and runs `perf record` on it until the
# command ends. Then `python3 benches/profile/kinds.py /tmp/NAME.perf` sorts the samples into kinds.
#   benches/profile/record.sh steps env ROTA_BENCH_ONLY=steps ROTA_BENCH_STEPS=20000 cargo bench --bench suite --profile dev
#   benches/profile/record.sh bullmq env ROTA_BENCH_ONLY=bullmq ROTA_BENCH_BURST=50000 cargo bench --bench suite --profile dev
# Needs `perf` (Debian: linux-perf) and the right to trace the process (root, or perf_event_paranoid <= 1).
# $1: output name (/tmp/NAME.json, /tmp/NAME.perf); the rest: the benchmark command.
set -u
out=$1; shift
before=$(pgrep redis-server | sort)
"$@" > /tmp/$out.json 2>/tmp/$out.err &
bench=$!
pid=""
for i in $(seq 1 600); do
  for p in $(pgrep redis-server); do
    if ! echo "$before" | grep -qx "$p"; then pid=$p; break; fi
  done
  [ -n "$pid" ] && break
  sleep 0.05
done
echo "redis pid $pid"
perf record -F 4999 -p $pid -o /tmp/$out.perf 2>/tmp/$out.perf.err &
perfpid=$!
wait $bench
kill -INT $perfpid 2>/dev/null; wait $perfpid 2>/dev/null
echo done
