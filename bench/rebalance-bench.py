#!/usr/bin/env python3
"""Rebalance under load: 512 slots holding ~1M keys move from one group to another.

Starts two redis-servers with the codis-slots module (or stock ones with --stock),
codis-dashboard and codis-proxy; fills group 1 with 2M keys (DEBUG POPULATE, so ~1M
of them sit in the 512 slots that move); runs a fixed-rate load (default 20k ops/s,
20% writes) through the proxy; measures client latency before, then runs a rebalance
over the two groups and reports its total time, keys/s, and the client p99 during it.

Usage: bench/rebalance-bench.py [--keys N] [--rate R] [--stock] [--method semi-async|sync] [--numkeys N]
Needs: redis-server, cargo. Figures are relative: all processes share this machine.
"""
import argparse, hashlib, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

from benchlib import BIN, ROOT, api, build_release, free_port, redis, stop_all, wait_port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=2_000_000, help="keys in group 1 before the rebalance")
    ap.add_argument("--rate", type=int, default=20_000, help="client ops/s through the proxy")
    ap.add_argument("--stock", action="store_true", help="stock redis-servers (no module)")
    ap.add_argument("--method", default="semi-async", help="migration_method")
    ap.add_argument("--numkeys", type=int, default=500, help="migration_async_numkeys (keys per async batch)")
    opts = ap.parse_args()
    build_release("codis-proxy", "codis-dashboard", "codis-slots", "codis-bench")
    tmp = tempfile.mkdtemp(prefix="codis-rebalance-")
    procs = []
    try:
        servers = []
        for i in range(2):
            port = free_port()
            cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", tmp, "--logfile", f"{tmp}/redis{i}.log", "--enable-debug-command", "yes"]
            if not opts.stock:
                cmd += ["--loadmodule", f"{BIN}/libcodis_slots.so"]
            procs.append(subprocess.Popen(cmd))
            wait_port(port)
            servers.append(port)
        dport, pport, aport = free_port(), free_port(), free_port()
        product = "rebalance-bench"
        with open(f"{tmp}/dashboard.toml", "w") as f:
            f.write(f'coordinator_addr = "{tmp}/coordinator"\nproduct_name = "{product}"\nadmin_addr = "127.0.0.1:{dport}"\n'
                    f'migration_method = "{opts.method}"\nmigration_async_numkeys = {opts.numkeys}\n')
        procs.append(subprocess.Popen([f"{BIN}/codis-dashboard", "--config", f"{tmp}/dashboard.toml", "--log", f"{tmp}/dashboard.log"]))
        wait_port(dport)
        dashboard = f"127.0.0.1:{dport}"
        x = hashlib.sha256(f"Codis-XAuth-[{product}]".encode()).hexdigest()[:32]
        for g, port in enumerate(servers, 1):
            api(dashboard, f"/api/topom/group/create/{x}/{g}")
            api(dashboard, f"/api/topom/group/add/{x}/{g}/127.0.0.1:{port}")
        api(dashboard, f"/api/topom/slots/assign/{x}", json.dumps([{"id": i, "group_id": 1} for i in range(1024)]))
        with open(f"{tmp}/proxy.toml", "w") as f:
            f.write(f'product_name = "{product}"\nproxy_addr = "127.0.0.1:{pport}"\nadmin_addr = "127.0.0.1:{aport}"\n')
        procs.append(subprocess.Popen([f"{BIN}/codis-proxy", "--config", f"{tmp}/proxy.toml", "--ncpu", "1",
                                       "--dashboard", dashboard, "--log", f"{tmp}/proxy.log"]))
        wait_port(pport)
        for _ in range(100):
            if redis(pport, "PING") == "PONG":
                break
            time.sleep(0.1)
        print(f"populating {opts.keys} keys in group 1 ...", flush=True)
        redis(servers[0], "DEBUG", "POPULATE", opts.keys, "key", 16)

        stop_file, phase_file = f"{tmp}/stop", f"{tmp}/phase"
        set_phase = lambda name: open(phase_file, "w").write(name)
        set_phase("warmup")
        load = subprocess.Popen([f"{BIN}/loadgen", "--addr", f"127.0.0.1:{pport}", "--rate", str(opts.rate),
                                 "--keys", str(opts.keys), "--stop-file", stop_file, "--phase-file", phase_file],
                                stdout=subprocess.PIPE, text=True)
        print("measuring a 10 s baseline ...", flush=True)
        time.sleep(2)  # connections being set up
        set_phase("before")
        time.sleep(8)  # baseline window (a benchmark's measuring period, not synchronisation)
        set_phase("during")
        t0 = time.time()
        plan = api(dashboard, f"/api/topom/slots/rebalance/{x}/1")
        print(f"rebalance of {len(plan)} slots started", flush=True)
        last_report = time.time()
        while True:
            stats = api(dashboard, "/topom/stats", method="GET")
            left = sum(1 for m in stats["slots"] if m["action"])
            if left == 0:
                break
            if time.time() - last_report > 10:
                moved = sum(p["moved"] for p in stats["slot_action"]["progress"]["slots"])
                print(f"  {left} slots to go, {moved:,} keys moved, status: {stats['slot_action']['progress']['status']}", flush=True)
                last_report = time.time()
            time.sleep(0.2)
        t1 = time.time()
        set_phase("after")
        time.sleep(5)  # tail window after the rebalance
        open(stop_file, "w").close()
        lines = [json.loads(l) for l in load.stdout.read().splitlines() if l.strip()]
        load.wait()
        moved = sum(p["moved"] for p in stats["slot_action"]["progress"]["slots"])
        seconds = [l for l in lines if "t" in l]
        during = [l for l in seconds if 10 < l["t"] <= 10 + (t1 - t0) + 1]
        p99 = lambda ls: max((l["p99_us"] for l in ls), default=0) / 1000
        errors = sum(l["errors"] for l in seconds)
        mode = "stock redis-server (SCAN + MIGRATE)" if opts.stock else f"codis-slots module, {opts.method}"
        print(f"\nrebalance of {len(plan)} slots ({mode}), {opts.rate} ops/s client load through codis-proxy")
        phases = {l["phase"]: l for l in lines if "phase" in l}
        whole = lambda name: phases.get(name, {}).get("p99_us", 0) / 1000
        print("| total time | keys moved | keys/s | client p99 before | client p99 during | p99 of the worst second during | client errors |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {t1 - t0:.1f} s | {moved:,} | {moved / (t1 - t0):,.0f} | {whole('before'):.2f} ms | {whole('during'):.2f} ms "
              f"| {p99(during):.2f} ms | {errors} |")
        print("p99 per second (ms): " + " ".join(f"{l['p99_us'] / 1000:.1f}" for l in seconds))
        summary = [l for l in lines if l.get("summary")]
        if summary:
            print(f"whole run: {summary[0]}")
    finally:
        stop_all(procs, tmp)


if __name__ == "__main__":
    main()
