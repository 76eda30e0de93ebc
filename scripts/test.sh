#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, and integration tests against real
# redis-server, etcd and ZooKeeper processes (started by the tests themselves on free
# loopback ports, with their own data directories); then codis-fe's browser test in
# headless Chromium against a local cluster (scripts/browser-test.sh; set
# CODIS_SKIP_BROWSER_TEST=1 to leave it out).
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in redis-server redis-cli redis-sentinel; do
    command -v "$bin" >/dev/null || { echo "missing $bin: apt-get install redis-server redis-sentinel redis-tools (see .ci/run)" >&2; exit 1; }
done
command -v etcd >/dev/null || { echo "missing etcd: apt-get install etcd-server etcd-client (see .ci/run)" >&2; exit 1; }
[ -e /usr/share/java/zookeeper.jar ] || { echo "missing ZooKeeper: apt-get install zookeeper (see .ci/run)" >&2; exit 1; }
cargo test --workspace --all-targets "$@"
if [ -n "${CODIS_SKIP_BROWSER_TEST:-}" ]; then
    echo "codis-fe browser test left out (CODIS_SKIP_BROWSER_TEST is set)"
else
    scripts/browser-test.sh
fi
