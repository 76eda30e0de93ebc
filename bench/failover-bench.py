#!/usr/bin/env python3
"""Failover under load: kill -9 of a group's master while clients write through the proxy.

Starts a group of a master and a replica (stock redis-servers), three redis-sentinels,
codis-dashboard (which configures the sentinels) and codis-proxy; runs a fixed-rate
write load (`loadgen --track`: every write creates its own key) through the proxy; kills
the master with SIGKILL and measures, from the client's side:
  - the time from the kill until writes succeed again,
  - acknowledged writes that were lost (keys acknowledged but absent afterwards).
The target is sentinel_down_after + 3 s. Each run starts from scratch.

Usage: bench/failover-bench.py [--runs N] [--down-after MS] [--rate R] [--replicas N]
Needs: redis-server, redis-sentinel, redis-cli, cargo. All processes share this machine.
"""
import argparse, hashlib, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

from benchlib import BIN, ROOT, api, build_release, free_port, need, redis, stop_all, wait_port


def wait_for(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = check()
        if v:
            return v
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def kv(port, *args):
    """A reply made of key/value lines (SENTINEL MASTER) as a dict."""
    lines = redis(port, *args).splitlines()
    return dict(zip(lines[0::2], lines[1::2]))


def one_run(opts, run):
    tmp = tempfile.mkdtemp(prefix="codis-failover-")
    procs = {}
    try:
        def server(name, port, *extra):
            procs[name] = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", tmp, "--logfile", f"{tmp}/{name}.log", "--repl-diskless-sync-delay", "0", *extra])
            wait_port(port)

        ports = [free_port() for _ in range(1 + opts.replicas)]
        server("master", ports[0])
        for i, p in enumerate(ports[1:]):
            server(f"replica{i}", p, "--replicaof", "127.0.0.1", str(ports[0]))
        wait_for("replicas to sync", lambda: all(
            "master_link_status:up" in redis(p, "INFO", "replication") for p in ports[1:]))
        sentinels = [free_port() for _ in range(3)]
        for i, p in enumerate(sentinels):
            with open(f"{tmp}/sentinel{i}.conf", "w") as f:
                f.write(f"port {p}\nbind 127.0.0.1\ndir {tmp}\nlogfile {tmp}/sentinel{i}.log\n")
            procs[f"sentinel{i}"] = subprocess.Popen(["redis-sentinel", f"{tmp}/sentinel{i}.conf"])
            wait_port(p)

        dport, pport, aport = free_port(), free_port(), free_port()
        product = "failover-bench"
        with open(f"{tmp}/dashboard.toml", "w") as f:
            f.write(f'coordinator_addr = "{tmp}/coordinator"\nproduct_name = "{product}"\nadmin_addr = "127.0.0.1:{dport}"\n'
                    f'sentinel_down_after = "{opts.down_after}ms"\nsentinel_failover_timeout = "30s"\n')
        procs["dashboard"] = subprocess.Popen([f"{BIN}/codis-dashboard", "--config", f"{tmp}/dashboard.toml",
                                               "--log", f"{tmp}/dashboard.log"])
        wait_port(dport)
        dashboard = f"127.0.0.1:{dport}"
        x = hashlib.sha256(f"Codis-XAuth-[{product}]".encode()).hexdigest()[:32]
        api(dashboard, f"/api/topom/group/create/{x}/1")
        for p in ports:
            api(dashboard, f"/api/topom/group/add/{x}/1/127.0.0.1:{p}")
        api(dashboard, f"/api/topom/slots/assign/{x}", json.dumps([{"id": i, "group_id": 1} for i in range(1024)]))
        with open(f"{tmp}/proxy.toml", "w") as f:
            f.write(f'product_name = "{product}"\nproxy_addr = "127.0.0.1:{pport}"\nadmin_addr = "127.0.0.1:{aport}"\n')
        procs["proxy"] = subprocess.Popen([f"{BIN}/codis-proxy", "--config", f"{tmp}/proxy.toml", "--ncpu", "1",
                                           "--dashboard", dashboard, "--log", f"{tmp}/proxy.log"])
        wait_port(pport)
        wait_for("the proxy to serve", lambda: redis(pport, "PING") == "PONG")
        for p in sentinels:
            api(dashboard, f"/api/topom/sentinels/add/{x}/127.0.0.1:{p}")
        api(dashboard, f"/api/topom/sentinels/resync-all/{x}")
        name = f"{product}-1"
        wait_for("sentinels to know the replicas and each other", lambda: all(
            int(kv(p, "SENTINEL", "MASTER", name).get("num-slaves", 0)) >= opts.replicas
            and kv(p, "SENTINEL", "MASTER", name).get("num-other-sentinels") == "2" for p in sentinels))

        stop_file = f"{tmp}/stop"
        load = subprocess.Popen([f"{BIN}/loadgen", "--addr", f"127.0.0.1:{pport}", "--rate", str(opts.rate),
                                 "--writes", "1", "--track", "--stop-file", stop_file],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(3)  # load before the kill (a measuring period, not synchronisation)
        kill_ms = int(time.time() * 1000)
        procs["master"].send_signal(signal.SIGKILL)
        procs["master"].wait()
        replicas = {f"127.0.0.1:{p}" for p in ports[1:]}

        def proxy_master():
            with urllib.request.urlopen(f"http://127.0.0.1:{aport}/proxy/slots", timeout=5) as r:
                b = json.loads(r.read())[0].get("backend_addr")
            return b if b in replicas else None

        new_master = wait_for("the proxy to switch", proxy_master, timeout=opts.down_after / 1000 + 60)
        switched_ms = int(time.time() * 1000)
        time.sleep(3)  # load after the failover
        open(stop_file, "w").close()
        out = load.communicate(timeout=120)[0]
        track = next(json.loads(l) for l in out.splitlines() if '"track"' in l)
        gaps = [g for g in track["write_gaps"] if g["to_ms"] > kill_ms]
        recovered_ms = gaps[0]["to_ms"] if gaps else kill_ms
        stats = api(dashboard, "/topom/stats", method="GET")
        failover = stats["group"]["states"].get("1", {}).get("last_failover") or {}
        return {
            "run": run,
            "new_master": new_master,
            "writes_back_s": (recovered_ms - kill_ms) / 1000,
            "proxy_switched_s": (switched_ms - kill_ms) / 1000,
            "dashboard_detect_to_switch_s": failover.get("duration_ms", 0) / 1000,
            "acked": track["acked_writes"],
            "lost": track["acked_writes_lost"],
        }
    finally:
        stop_all(list(procs.values()), tmp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--down-after", type=int, default=5000, help="sentinel_down_after in milliseconds")
    ap.add_argument("--rate", type=int, default=5000, help="writes/s through the proxy")
    ap.add_argument("--replicas", type=int, default=1, help="replicas in the group")
    opts = ap.parse_args()
    need(["redis-server", "redis-sentinel", "redis-cli"], "redis-server redis-sentinel redis-tools")
    build_release("codis-proxy", "codis-dashboard", "codis-bench")
    results = []
    for run in range(1, opts.runs + 1):
        r = one_run(opts, run)
        print(json.dumps(r), flush=True)
        results.append(r)
    target = opts.down_after / 1000 + 3
    print(f"\nkill -9 of the master, sentinel_down_after = {opts.down_after} ms, {opts.rate} writes/s through codis-proxy, "
          f"{opts.replicas} replica(s), 3 sentinels (target: writes back within {target:.1f} s)")
    print("| run | writes back after | proxy switched after | dashboard: detected to switched | acknowledged writes | lost |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['run']} | {r['writes_back_s']:.2f} s | {r['proxy_switched_s']:.2f} s "
              f"| {r['dashboard_detect_to_switch_s']:.2f} s | {r['acked']:,} | {r['lost']} |")
    worst = max(r["writes_back_s"] for r in results)
    print(f"worst: writes back after {worst:.2f} s ({'within' if worst <= target else 'OVER'} the {target:.1f} s target)")


if __name__ == "__main__":
    main()
