#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, and integration tests against real
# redis-server processes (started by the tests themselves on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in redis-server redis-cli redis-sentinel; do
    command -v "$bin" >/dev/null || { echo "missing $bin: apt-get install redis-server redis-sentinel redis-tools (see .ci/run)" >&2; exit 1; }
done
exec cargo test --workspace --all-targets "$@"
