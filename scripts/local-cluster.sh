#!/usr/bin/env bash
# Starts (or stops) a local codis-rs cluster: redis-servers with the codis-slots module,
# plus codis-proxy on port 19000.
#
#   scripts/local-cluster.sh          start (builds release binaries first)
#   scripts/local-cluster.sh stop     stop everything it started
#   scripts/local-cluster.sh status   show what runs
#
# Until codis-dashboard exists the proxy runs in static mode (--fillslots): slots are
# split evenly over the redis servers. Everything lives under tmp/local-cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
RUN="$ROOT/tmp/local-cluster"
SERVERS=${CODIS_LOCAL_SERVERS:-2}
BASE_PORT=${CODIS_LOCAL_BASE_PORT:-16379}
PROXY_PORT=${CODIS_LOCAL_PROXY_PORT:-19000}
ADMIN_PORT=${CODIS_LOCAL_ADMIN_PORT:-11080}

stop() {
    for pidfile in "$RUN"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null && echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
        rm -f "$pidfile"
    done
}

status() {
    for pidfile in "$RUN"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then echo "running  $(basename "$pidfile" .pid) (pid $pid)"; else echo "dead     $(basename "$pidfile" .pid)"; fi
    done
}

wait_port() {
    for _ in $(seq 1 100); do
        if (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1; see the logs in $RUN" >&2
    exit 1
}

start() {
    command -v redis-server >/dev/null || { echo "redis-server not found: apt-get install redis-server redis-tools" >&2; exit 1; }
    mkdir -p "$RUN"
    stop >/dev/null
    echo "building codis-proxy and the codis-slots module (release)..."
    cargo build --release -q -p codis-proxy -p codis-slots
    local addrs=()
    for i in $(seq 0 $((SERVERS - 1))); do
        port=$((BASE_PORT + i))
        dir="$RUN/redis-$port"
        mkdir -p "$dir"
        redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
            --loadmodule "$ROOT/target/release/libcodis_slots.so" \
            --daemonize yes --pidfile "$RUN/redis-$port.pid" --logfile "$dir/redis.log"
        wait_port "$port"
        addrs+=("127.0.0.1:$port")
    done
    python3 - "$RUN/slots.json" "${addrs[@]}" <<'PY'
import json, sys
out, addrs = sys.argv[1], sys.argv[2:]
json.dump([{"id": i, "backend_addr": addrs[i * len(addrs) // 1024]} for i in range(1024)], open(out, "w"))
PY
    cat > "$RUN/proxy.toml" <<TOML
product_name = "codis-demo"
proxy_addr = "127.0.0.1:$PROXY_PORT"
admin_addr = "127.0.0.1:$ADMIN_PORT"
TOML
    nohup "$ROOT/target/release/codis-proxy" --config "$RUN/proxy.toml" --fillslots "$RUN/slots.json" \
        --log "$RUN/proxy.log" --pidfile "$RUN/codis-proxy.pid" >/dev/null 2>&1 &
    wait_port "$PROXY_PORT"
    cat <<MSG

codis-rs local cluster is up:
  redis servers : ${addrs[*]} (codis-slots module loaded; slots split evenly)
  codis-proxy   : 127.0.0.1:$PROXY_PORT      connect: redis-cli -p $PROXY_PORT
  admin API     : http://127.0.0.1:$ADMIN_PORT/proxy
  logs          : $RUN
  stop with     : scripts/local-cluster.sh stop
MSG
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
