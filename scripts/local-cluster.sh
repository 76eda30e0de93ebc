#!/usr/bin/env bash
# Runs a local codis-rs cluster:
#   - two groups, each a master and a replica redis-server with the codis-slots module,
#   - codis-dashboard on 18080, its state in a coordinator: a directory by default, or
#     an etcd or ZooKeeper server you run (see below),
#   - codis-proxy on 19000 (admin API on 11080), registered with the dashboard,
#   - slots split between the two groups,
#   - three redis-sentinels on 26379-26381 that fail a dead master over within ~7 s
#     (sentinel_down_after 5 s); proxies and the dashboard follow them,
#   - codis-fe, the web console, on http://127.0.0.1:8080 (log in with an empty secret:
#     the demo product has no product_auth).
#
#   scripts/local-cluster.sh               start in the foreground; Ctrl-C stops everything
#   scripts/local-cluster.sh --no-sentinels  the same without sentinels (no automatic failover)
#   scripts/local-cluster.sh --background  start and return (stop with: scripts/local-cluster.sh stop)
#   scripts/local-cluster.sh --bare        start the servers and sentinels but create no groups,
#                                          assign no slots and add no sentinels (do it in codis-fe)
#   scripts/local-cluster.sh stop          stop what a background start left running
#   scripts/local-cluster.sh status        show what runs
#
# Everything lives under tmp/local-cluster/ (logs, data, coordinator); the cluster state
# starts fresh each time.
#
# Another coordinator (the proxy then finds the dashboard there and registers for Jodis):
#   CODIS_LOCAL_COORDINATOR=etcd scripts/local-cluster.sh        # etcd at 127.0.0.1:2379
#   CODIS_LOCAL_COORDINATOR=zookeeper scripts/local-cluster.sh   # ZooKeeper at 127.0.0.1:2181
#   CODIS_LOCAL_COORDINATOR_ADDR=host:port                       # elsewhere
#   CODIS_LOCAL_COORDINATOR_AUTH=user:password                   # etcd user / ZooKeeper digest
#
# Ports: CODIS_LOCAL_{BASE,PROXY,ADMIN,DASHBOARD,SENTINEL,FE}_PORT; CODIS_LOCAL_DIR moves
# tmp/local-cluster; CODIS_LOCAL_PROFILE=debug uses debug builds (faster to build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
RUN="${CODIS_LOCAL_DIR:-$ROOT/tmp/local-cluster}"
PRODUCT=codis-demo
BASE_PORT=${CODIS_LOCAL_BASE_PORT:-16379}
PROXY_PORT=${CODIS_LOCAL_PROXY_PORT:-19000}
PROXY_ADMIN_PORT=${CODIS_LOCAL_ADMIN_PORT:-11080}
DASHBOARD_PORT=${CODIS_LOCAL_DASHBOARD_PORT:-18080}
SENTINEL_PORT=${CODIS_LOCAL_SENTINEL_PORT:-26379}
FE_PORT=${CODIS_LOCAL_FE_PORT:-8080}
SENTINELS=1
BARE=0
PROFILE=${CODIS_LOCAL_PROFILE:-release}
BIN="$ROOT/target/$PROFILE"
COORDINATOR=${CODIS_LOCAL_COORDINATOR:-filesystem}
COORDINATOR_AUTH=${CODIS_LOCAL_COORDINATOR_AUTH:-}
case "$COORDINATOR" in
    filesystem) COORDINATOR_ADDR="$RUN/coordinator" ;;
    etcd) COORDINATOR_ADDR=${CODIS_LOCAL_COORDINATOR_ADDR:-127.0.0.1:2379} ;;
    zookeeper) COORDINATOR_ADDR=${CODIS_LOCAL_COORDINATOR_ADDR:-127.0.0.1:2181} ;;
    *) echo "CODIS_LOCAL_COORDINATOR=$COORDINATOR: use filesystem, etcd or zookeeper" >&2; exit 2 ;;
esac

stop() {
    local stopped=0
    for pidfile in "$RUN"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill "$pid" 2>/dev/null; then
            echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
            stopped=1
        fi
        rm -f "$pidfile"
    done
    # give them a moment to exit cleanly, then make sure nothing is left behind
    if [ "$stopped" = 1 ]; then sleep 0.5; fi
    pkill -f "$RUN/" 2>/dev/null || true
}

status() {
    for pidfile in "$RUN"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then echo "running  $(basename "$pidfile" .pid) (pid $pid)"; else echo "dead     $(basename "$pidfile" .pid)"; fi
    done
}

wait_port() {
    for _ in $(seq 1 200); do
        if (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1; see the logs in $RUN" >&2
    exit 1
}

# PUT to the dashboard's API; fails with its error message.
api() {
    local out
    out=$(curl -s -w '\n%{http_code}' -X PUT "http://127.0.0.1:$DASHBOARD_PORT/api/topom/$1" ${2:+-d "$2"})
    if [ "$(tail -n1 <<<"$out")" != 200 ]; then
        echo "dashboard call $1 failed: $(head -n -1 <<<"$out")" >&2
        exit 1
    fi
}

start() {
    local background=$1
    for bin in redis-server curl python3; do
        command -v "$bin" >/dev/null || { echo "$bin not found: apt-get install redis-server redis-tools curl python3" >&2; exit 1; }
    done
    if [ "$SENTINELS" = 1 ] && ! command -v redis-sentinel >/dev/null; then
        echo "redis-sentinel not found: apt-get install redis-sentinel (or run with --no-sentinels)" >&2
        exit 1
    fi
    stop >/dev/null
    rm -rf "$RUN"
    mkdir -p "$RUN"
    echo "building codis-proxy, codis-dashboard, codis-fe and the codis-slots module ($PROFILE)..."
    local release=()
    if [ "$PROFILE" = release ]; then release=(--release); fi
    cargo build "${release[@]}" -q -p codis-proxy -p codis-dashboard -p codis-fe -p codis-slots

    # two groups: master and replica each
    local addrs=()
    for i in 0 1 2 3; do
        local port=$((BASE_PORT + i)) dir="$RUN/redis-$((BASE_PORT + i))"
        local replica=()
        if [ $((i % 2)) = 1 ]; then replica=(--replicaof 127.0.0.1 $((port - 1))); fi
        mkdir -p "$dir"
        redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
            --repl-diskless-sync-delay 0 --loadmodule "$BIN/libcodis_slots.so" "${replica[@]}" \
            --daemonize yes --pidfile "$RUN/redis-$port.pid" --logfile "$dir/redis.log"
        wait_port "$port"
        addrs+=("127.0.0.1:$port")
    done

    # A fresh product in etcd or ZooKeeper too (the filesystem one went with $RUN).
    case "$COORDINATOR" in
        etcd)
            command -v etcdctl >/dev/null || { echo "etcdctl not found: apt-get install etcd-client" >&2; exit 1; }
            local user=()
            if [ -n "$COORDINATOR_AUTH" ]; then user=(--user "$COORDINATOR_AUTH"); fi
            ETCDCTL_API=3 etcdctl --endpoints="$COORDINATOR_ADDR" "${user[@]}" del --prefix "/codis3/$PRODUCT/" >/dev/null \
                || { echo "cannot reach etcd at $COORDINATOR_ADDR (start it, e.g. etcd --data-dir /tmp/etcd)" >&2; exit 1; }
            ;;
        zookeeper)
            # (Nodes made with a password are left; remove them with zkCli.sh's addauth first.)
            local zkcli=/usr/share/zookeeper/bin/zkCli.sh
            [ -x "$zkcli" ] || { echo "zkCli.sh not found: apt-get install zookeeper" >&2; exit 1; }
            "$zkcli" -server "$COORDINATOR_ADDR" deleteall "/codis3/$PRODUCT" >/dev/null 2>&1 || true
            ;;
    esac
    cat > "$RUN/dashboard.toml" <<TOML
coordinator_name = "$COORDINATOR"
coordinator_addr = "$COORDINATOR_ADDR"
coordinator_auth = "$COORDINATOR_AUTH"
product_name = "$PRODUCT"
admin_addr = "127.0.0.1:$DASHBOARD_PORT"
sentinel_down_after = "5s"
sentinel_failover_timeout = "60s"
TOML
    "$BIN/codis-dashboard" --config "$RUN/dashboard.toml" --log "$RUN/dashboard.log" \
        --pidfile "$RUN/codis-dashboard.pid" >/dev/null 2>&1 &
    wait_port "$DASHBOARD_PORT"

    "$BIN/codis-fe" --listen "127.0.0.1:$FE_PORT" "--$COORDINATOR" "$COORDINATOR_ADDR" \
        ${COORDINATOR_AUTH:+"--$COORDINATOR-auth" "$COORDINATOR_AUTH"} \
        --log "$RUN/fe.log" --pidfile "$RUN/codis-fe.pid" >/dev/null 2>&1 &
    wait_port "$FE_PORT"

    local xauth
    xauth=$(printf '%s' "Codis-XAuth-[$PRODUCT]" | sha256sum | cut -c1-32)
    if [ "$BARE" = 0 ]; then
    api "group/create/$xauth/1"
    api "group/create/$xauth/2"
    api "group/add/$xauth/1/${addrs[0]}"
    api "group/add/$xauth/1/${addrs[1]}"
    api "group/add/$xauth/2/${addrs[2]}"
    api "group/add/$xauth/2/${addrs[3]}"
    api "slots/assign/$xauth" "$(python3 -c 'import json; print(json.dumps([{"id": i, "group_id": 1 if i < 512 else 2} for i in range(1024)]))')"
    fi

    cat > "$RUN/proxy.toml" <<TOML
product_name = "$PRODUCT"
proxy_addr = "127.0.0.1:$PROXY_PORT"
admin_addr = "127.0.0.1:$PROXY_ADMIN_PORT"
TOML
    # With etcd or ZooKeeper, the proxy finds the dashboard there and registers for Jodis.
    local join=(--dashboard "127.0.0.1:$DASHBOARD_PORT")
    if [ "$COORDINATOR" != filesystem ]; then
        join=("--$COORDINATOR" "$COORDINATOR_ADDR")
        if [ -n "$COORDINATOR_AUTH" ]; then join+=("--$COORDINATOR-auth" "$COORDINATOR_AUTH"); fi
        cat >> "$RUN/proxy.toml" <<TOML
jodis_name = "$COORDINATOR"
jodis_addr = "$COORDINATOR_ADDR"
jodis_auth = "$COORDINATOR_AUTH"
TOML
    fi
    "$BIN/codis-proxy" --config "$RUN/proxy.toml" "${join[@]}" \
        --log "$RUN/proxy.log" --pidfile "$RUN/codis-proxy.pid" >/dev/null 2>&1 &
    wait_port "$PROXY_PORT"
    for _ in $(seq 1 100); do
        if [ "$(redis-cli -p "$PROXY_PORT" ping 2>/dev/null)" = PONG ]; then break; fi
        sleep 0.1
    done

    local sentinel_line="none (started with --no-sentinels)"
    if [ "$SENTINELS" = 1 ]; then
        local sentinel_addrs=()
        for i in 0 1 2; do
            local port=$((SENTINEL_PORT + i)) dir="$RUN/sentinel-$((SENTINEL_PORT + i))"
            mkdir -p "$dir"
            printf 'port %s\nbind 127.0.0.1\ndir %s\nlogfile %s/sentinel.log\ndaemonize yes\npidfile %s\n' \
                "$port" "$dir" "$dir" "$RUN/sentinel-$port.pid" > "$dir/sentinel.conf"
            redis-sentinel "$dir/sentinel.conf"
            wait_port "$port"
            if [ "$BARE" = 0 ]; then api "sentinels/add/$xauth/127.0.0.1:$port"; fi
            sentinel_addrs+=("127.0.0.1:$port")
        done
        if [ "$BARE" = 0 ]; then
            api "sentinels/resync-all/$xauth"
            sentinel_line="${sentinel_addrs[*]} (failover after 5 s down)"
        else
            sentinel_line="${sentinel_addrs[*]} (running; not added to the dashboard: --bare)"
        fi
    fi

    local groups_line
    if [ "$BARE" = 0 ]; then
        groups_line="  group 1         : ${addrs[0]} (master), ${addrs[1]} (replica), slots 0-511
  group 2         : ${addrs[2]} (master), ${addrs[3]} (replica), slots 512-1023"
    else
        groups_line="  servers         : ${addrs[*]} (no groups yet: --bare; ${addrs[1]} and ${addrs[3]} replicate ${addrs[0]} and ${addrs[2]})"
    fi
    cat <<MSG

codis-rs local cluster is up:
  codis-proxy     : 127.0.0.1:$PROXY_PORT        connect: redis-cli -p $PROXY_PORT
  codis-dashboard : http://127.0.0.1:$DASHBOARD_PORT/topom   (coordinator: $COORDINATOR $COORDINATOR_ADDR)
  proxy admin     : http://127.0.0.1:$PROXY_ADMIN_PORT/proxy
  codis-fe        : http://127.0.0.1:$FE_PORT/   (web console; log in with an empty secret)
$groups_line
  sentinels       : $sentinel_line
  logs and data   : $RUN
MSG
    if [ "$background" = 1 ]; then
        echo "  stop with       : scripts/local-cluster.sh stop"
        return
    fi
    echo "  press Ctrl-C to stop everything"
    trap 'echo; stop; exit 0' INT TERM
    while true; do sleep 1; done
}

BACKGROUND=0
ACTION=start
for arg in "$@"; do
    case "$arg" in
        start) ;;
        --background) BACKGROUND=1 ;;
        --no-sentinels) SENTINELS=0 ;;
        --bare) BARE=1 ;;
        stop|status) ACTION=$arg ;;
        *) echo "usage: $0 [start|stop|status] [--background] [--no-sentinels] [--bare]" >&2; exit 2 ;;
    esac
done
case "$ACTION" in
    start) start "$BACKGROUND" ;;
    stop) stop ;;
    status) status ;;
esac
