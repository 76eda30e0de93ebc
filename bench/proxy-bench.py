#!/usr/bin/env python3
"""Side-by-side throughput of codis-proxy, twemproxy and a direct redis-server.

Starts two redis-servers, codis-proxy (static mode, slots split over both) and
nutcracker (twemproxy) over the same two servers, then runs redis-benchmark against
each target in the same run and prints ops/s, the ratios proxy/direct and
proxy/twemproxy, and codis-proxy's CPU seconds per million requests.

Usage: bench/proxy-bench.py [--quick] [--ncpu N] [--repeat K]
Needs: redis-server, redis-benchmark, nutcracker (Debian packages), cargo.
Numbers are relative: every process shares this machine's cores with the others.
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

from benchlib import ROOT, bench, build_release, cpu_seconds, free_port, need, rss_mib, stop_all, wait_port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer requests (smoke test of the script)")
    # On a small machine the proxy shares the cores with redis-benchmark and both
    # servers; one worker thread contends least there. Use --ncpu N on bigger hosts.
    ap.add_argument("--ncpu", type=int, default=1, help="codis-proxy worker threads (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is shown")
    opts = ap.parse_args()
    need(["redis-server", "redis-benchmark", "nutcracker"], "redis-server redis-tools nutcracker")
    build_release("codis-proxy")

    tmp = tempfile.mkdtemp(prefix="codis-bench-")
    procs = []
    try:
        redis = []
        for i in range(2):
            port = free_port()
            procs.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no", "--dir", tmp, "--logfile", f"{tmp}/redis{i}.log"]))
            wait_port(port)
            redis.append(port)
        addrs = [f"127.0.0.1:{p}" for p in redis]

        proxy_port, admin_port = free_port(), free_port()
        with open(f"{tmp}/slots.json", "w") as f:
            json.dump([{"id": i, "backend_addr": addrs[i * 2 // 1024]} for i in range(1024)], f)
        with open(f"{tmp}/proxy.toml", "w") as f:
            f.write(f'proxy_addr = "127.0.0.1:{proxy_port}"\nadmin_addr = "127.0.0.1:{admin_port}"\n')
        proxy = subprocess.Popen([f"{ROOT}/target/release/codis-proxy", "--config", f"{tmp}/proxy.toml", "--ncpu",
                                  str(opts.ncpu), "--fillslots", f"{tmp}/slots.json", "--log", f"{tmp}/proxy.log",
                                  "--log-level", "warn"])
        procs.append(proxy)
        wait_port(proxy_port)
        # static mode fills slots right after binding; wait until it answers
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(proxy_port), "PING"], capture_output=True, text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.05)

        twem_port = free_port()
        with open(f"{tmp}/nutcracker.yml", "w") as f:
            f.write("bench:\n  listen: 127.0.0.1:%d\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n"
                    "  auto_eject_hosts: false\n  servers:\n%s" % (twem_port, "".join(f"   - {a}:1\n" for a in addrs)))
        procs.append(subprocess.Popen(["nutcracker", "-c", f"{tmp}/nutcracker.yml", "-s", str(free_port()),
                                       "-o", f"{tmp}/nutcracker.log", "-p", f"{tmp}/nutcracker.pid"]))
        wait_port(twem_port)

        targets = [("direct", redis[0]), ("codis-proxy", proxy_port), ("twemproxy", twem_port)]
        scale = 0.1 if opts.quick else 1.0
        keys10 = ["key:__rand_int__"] * 10
        mset10 = [x for k in keys10 for x in (k, "xxx")]
        cases = [
            ("SET P1", ["-t", "set"], 300_000, 1, "SET"),
            ("GET P1", ["-t", "get"], 300_000, 1, "GET"),
            ("SET P16", ["-t", "set"], 2_000_000, 16, "SET"),
            ("GET P16", ["-t", "get"], 2_000_000, 16, "GET"),
            ("MGET 10 keys P1", ["mget"] + keys10, 200_000, 1, None),
            ("MSET 10 keys P1", ["mset"] + mset10, 200_000, 1, None),
        ]
        results = {}
        proxy_cpu = {}
        for name, args, n, pipeline, key in cases:
            n = max(int(n * scale), 1000)
            for target, port in targets:
                runs = []
                cpu = []
                for _ in range(opts.repeat):
                    before = cpu_seconds(proxy.pid)
                    r = bench(port, args, n, 50, pipeline)
                    cpu.append((cpu_seconds(proxy.pid) - before) / n * 1e6)
                    runs.append(next(iter(r.values())) if key is None else r[key])
                results[(name, target)] = statistics.median(runs)
                if target == "codis-proxy":
                    proxy_cpu[name] = statistics.median(cpu)

        print(f"\nredis-benchmark, 50 clients, -r 100000, median of {opts.repeat}; codis-proxy --ncpu {opts.ncpu}; "
              f"{os.cpu_count()} cores shared by all processes")
        print(f"| case | direct redis | codis-proxy | twemproxy | proxy/direct | proxy/twemproxy | proxy CPU s per 1M req |")
        print("|---|---|---|---|---|---|---|")
        for name, *_ in cases:
            d, p, t = (results[(name, x)] for x in ("direct", "codis-proxy", "twemproxy"))
            print(f"| {name} | {d:,.0f} | {p:,.0f} | {t:,.0f} | {p / d:.2f}x | {p / t:.2f}x | {proxy_cpu[name]:.2f} |")
        get_keys = results[("GET P1", "codis-proxy")]
        mget_keys = results[("MGET 10 keys P1", "codis-proxy")] * 10
        set_keys = results[("SET P1", "codis-proxy")]
        mset_keys = results[("MSET 10 keys P1", "codis-proxy")] * 10
        print(f"\nkeys/s through codis-proxy, 10-key MGET vs one GET per key (both P1, 50 clients): "
              f"{mget_keys:,.0f} vs {get_keys:,.0f} = {mget_keys / get_keys:.2f}x")
        print(f"keys/s through codis-proxy, 10-key MSET vs one SET per key (both P1, 50 clients): "
              f"{mset_keys:,.0f} vs {set_keys:,.0f} = {mset_keys / set_keys:.2f}x")
        print(f"codis-proxy RSS after the run: {rss_mib(proxy.pid):.1f} MiB")
        idle = []
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", proxy_port))
            s.sendall(b"PING\r\n")
            idle.append(s)
        for s in idle:
            assert s.recv(64) == b"+PONG\r\n"
        time.sleep(1)
        print(f"codis-proxy RSS with 1000 idle clients connected: {rss_mib(proxy.pid):.1f} MiB")
        for s in idle:
            s.close()
    finally:
        stop_all(procs, tmp)


if __name__ == "__main__":
    main()
