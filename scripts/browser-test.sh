#!/usr/bin/env bash
# Browser test of codis-fe: starts a bare local cluster (scripts/local-cluster.sh --bare,
# debug builds, its own ports and directory), then drives the console in headless
# Chromium (crates/codis-fe/tests/browser/console.test.js): log in, create groups, add
# servers, assign slots, migrate and watch the progress bars, promote a replica, add
# sentinels.
# Screenshots of every page land in target/fe-screenshots/.
#
# Needs chromium (apt-get install chromium) and node/npm. Outside CI (CI unset) a
# missing chromium skips the test with a message; in CI it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
    if [ -n "${CI:-}" ]; then
        echo "chromium not found at $CHROMIUM: apt-get install chromium (see .ci/run)" >&2
        exit 1
    fi
    echo "SKIPPED the codis-fe browser test: chromium not found at $CHROMIUM (apt-get install chromium)" >&2
    exit 0
fi
command -v npm >/dev/null || { echo "npm not found: apt-get install npm" >&2; exit 1; }
TEST_DIR="$ROOT/crates/codis-fe/tests/browser"
if [ ! -d "$TEST_DIR/node_modules/playwright-core" ]; then
    (cd "$TEST_DIR" && npm ci --no-audit --no-fund)
fi

# Free loopback ports for everything.
read -r -a PORTS <<<"$(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
')"
# local-cluster.sh uses BASE_PORT..BASE_PORT+3 for the servers and SENTINEL_PORT..+2 for
# the sentinels: find seven free ports in a row.
BASE=$(python3 -c '
import socket, random
for _ in range(200):
    base = random.randrange(30000, 60000)
    socks = []
    try:
        for i in range(7):
            s = socket.socket(); socks.append(s); s.bind(("127.0.0.1", base + i))
        print(base); break
    except OSError: pass
    finally:
        for s in socks: s.close()
')
export CODIS_LOCAL_PROFILE=debug
export CODIS_LOCAL_DIR="$ROOT/target/fe-browser-cluster"
export CODIS_LOCAL_BASE_PORT=$BASE
export CODIS_LOCAL_PROXY_PORT=${PORTS[0]}
export CODIS_LOCAL_ADMIN_PORT=${PORTS[1]}
export CODIS_LOCAL_DASHBOARD_PORT=${PORTS[2]}
export CODIS_LOCAL_SENTINEL_PORT=$((BASE + 4))
export CODIS_LOCAL_FE_PORT=${PORTS[4]}
trap 'scripts/local-cluster.sh stop >/dev/null 2>&1 || true' EXIT
scripts/local-cluster.sh --bare --background

export FE_URL="http://127.0.0.1:$CODIS_LOCAL_FE_PORT"
export PRODUCT=codis-demo
export SERVERS="127.0.0.1:$BASE 127.0.0.1:$((BASE + 1)) 127.0.0.1:$((BASE + 2)) 127.0.0.1:$((BASE + 3))"
export SENTINELS="127.0.0.1:$((BASE + 4)) 127.0.0.1:$((BASE + 5)) 127.0.0.1:$((BASE + 6))"
export PROXY_PORT=$CODIS_LOCAL_PROXY_PORT
export SCREENSHOTS="$ROOT/target/fe-screenshots"
export CHROMIUM
rm -rf "$SCREENSHOTS"
(cd "$TEST_DIR" && node console.test.js) || {
    echo "codis-fe browser test failed; logs in $CODIS_LOCAL_DIR, screenshots in $SCREENSHOTS" >&2
    exit 1
}
