#!/usr/bin/env python3
"""Two or more codis-proxy builds or configurations side by side, to measure what a
change costs on the hot path.

Each variant is a codis-proxy (one worker thread, static slots over the same
redis-server); rounds run redis-benchmark (SET/GET at -P 1 and -P 16) against every
variant in turn, so machine noise hits all of them alike. Prints, per test, the median
requests/s and the proxy's CPU microseconds per request of each variant, and their
ratio to the first. CPU per request is the steadier figure on a shared machine.

Usage: bench/proxy-ab.py NAME=BINARY[:key=value,...] NAME=BINARY[:...] [--rounds N] [-n N]
  e.g. bench/proxy-ab.py before=/tmp/codis-proxy-old after=target/release/codis-proxy \\
       after-noslowlog=target/release/codis-proxy:slowlog_log_slower_than=-1
Needs: redis-server, redis-benchmark.
"""
import argparse, json, os, statistics, subprocess, tempfile

from benchlib import bench, cpu_seconds, free_port, need, stop_all, wait_port

TESTS = [("SET", 1), ("GET", 1), ("SET", 16), ("GET", 16)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="+", help="NAME=BINARY[:key=value,...] (extra proxy.toml keys)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=200000, help="requests per redis-benchmark run")
    opts = ap.parse_args()
    need(["redis-server", "redis-benchmark"], "redis-server redis-tools")
    tmp = tempfile.mkdtemp(prefix="codis-proxy-ab-")
    procs = []
    try:
        rport = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL))
        wait_port(rport)
        with open(f"{tmp}/slots.json", "w") as f:
            json.dump([{"id": i, "backend_addr": f"127.0.0.1:{rport}"} for i in range(1024)], f)
        variants = []
        for v in opts.variants:
            name, rest = v.split("=", 1)
            binary, _, extra = rest.partition(":")
            port, admin = free_port(), free_port()
            lines = [f'proxy_addr = "127.0.0.1:{port}"', f'admin_addr = "127.0.0.1:{admin}"']
            for kv in filter(None, extra.split(",")):
                k, val = kv.split("=", 1)
                lines.append(f"{k} = {val}")
            with open(f"{tmp}/{name}.toml", "w") as f:
                f.write("\n".join(lines) + "\n")
            p = subprocess.Popen([binary, "--config", f"{tmp}/{name}.toml", "--ncpu", "1", "--fillslots",
                                  f"{tmp}/slots.json", "--log", f"{tmp}/{name}.log"])
            procs.append(p)
            wait_port(port)
            variants.append((name, port, p))
        ops = {(n, t): [] for n, _, _ in variants for t in TESTS}
        cpu = {(n, t): [] for n, _, _ in variants for t in TESTS}
        for _ in range(opts.rounds):
            for test in TESTS:
                for name, port, p in variants:
                    before = cpu_seconds(p.pid)
                    r = bench(port, ["-t", test[0].lower()], opts.n, 50, test[1])
                    used = cpu_seconds(p.pid) - before
                    ops[(name, test)].append(r[test[0]])
                    cpu[(name, test)].append(used / opts.n * 1e6)
        base = variants[0][0]
        print(f"median of {opts.rounds} rounds, {opts.n} requests each, 50 clients, proxy on one thread")
        print("| test | " + " | ".join(f"{n} req/s | {n} CPU µs/req" for n, _, _ in variants) + " |")
        print("|---|" + "---|---|" * len(variants))
        for test in TESTS:
            cells = []
            for name, _, _ in variants:
                o, c = statistics.median(ops[(name, test)]), statistics.median(cpu[(name, test)])
                bo, bc = statistics.median(ops[(base, test)]), statistics.median(cpu[(base, test)])
                cells.append(f"{o:,.0f} ({o / bo:.2f}x) | {c:.2f} ({c / bc:.2f}x)")
            print(f"| {test[0]} P{test[1]} | " + " | ".join(cells) + " |")
    finally:
        stop_all(procs, tmp)


if __name__ == "__main__":
    main()
