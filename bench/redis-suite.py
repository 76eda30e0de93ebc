#!/usr/bin/env python3
"""Redis's own Tcl test suite against codis-proxy, compared with a single redis-server.

Gets the suite from Debian bookworm's `redis` source package (7.0.15, the tag of
Debian's redis-server) with a private apt configuration, so the machine's package lists
stay as they are; nothing of redis is committed here. Then it runs each unit twice in
external mode (`runtest --host --port --singledb --durable --tags -slow`):

  direct  one redis-server;
  proxy   codis-proxy (static routing, slots 0-511 on one redis-server, 512-1023 on
          another), with `session_allow_keyspace_commands = true` because the suite
          sends FLUSHALL before every test block.

The suite tunes servers with CONFIG SET and DEBUG, which the proxy refuses as Codis does
(an operator runs them on the servers). A small adapter in the suite's copy of
`test_helper.tcl` sends those two commands from `r` straight to the backends: CONFIG and
server-wide DEBUG to every backend, key DEBUG (OBJECT, LISTPACK, ...) to the key's
owner (same slot hashing as Codis: crc32 of the key or its {tag}, mod 1024). Everything
else goes through the proxy. The adapter is also loaded in the direct run, where it
talks to the single server, so both runs execute the same code.

Writes a report (pass counts per unit, each proxy-only failure with its message) to
stdout and, with --report FILE, to FILE as Markdown.

Usage: bench/redis-suite.py [--units unit/type/list,unit/multi,...] [--report FILE]
Needs: redis-server, tclsh (apt-get install tcl), apt-get, cargo.
"""
import argparse, json, os, re, shutil, socket, subprocess, sys, tarfile, tempfile, time

from benchlib import BIN, ROOT, build_release, free_port, need, wait_port

CACHE = os.path.join(ROOT, "tmp", "redis-suite")
UNITS = [
    "unit/type/string", "unit/type/incr", "unit/type/list", "unit/type/list-2", "unit/type/list-3",
    "unit/type/set", "unit/type/zset", "unit/type/hash", "unit/type/stream", "unit/type/stream-cgroups",
    "unit/keyspace", "unit/expire", "unit/pubsub", "unit/multi", "unit/scripting",
]

ADAPTER = r'''
# codis-rs adapter (bench/redis-suite.py): CONFIG and DEBUG go straight to the servers
# behind the proxy, which refuses them as Codis does. CODIS_SUITE_BACKENDS is
# "host:port host:port", the owner of slots 0-511 first.
set ::codis_backends [split [string trim [expr {[info exists ::env(CODIS_SUITE_BACKENDS)] ? $::env(CODIS_SUITE_BACKENDS) : ""}]]]
proc codis_slot {key} {
    set b [string first "\{" $key]
    if {$b >= 0} {
        set e [string first "\}" $key [expr {$b + 1}]]
        if {$e >= 0} { set key [string range $key [expr {$b + 1}] [expr {$e - 1}]] }
    }
    return [expr {([zlib crc32 [encoding convertto utf-8 $key]] & 0xffffffff) % 1024}]
}
proc codis_backend_call {addr args} {
    lassign [split $addr :] host port
    set c [redis $host $port 0 $::tls]
    if {[catch {set res [$c {*}$args]} err]} { $c close; error $err }
    $c close
    return $res
}
# The suite waits for background AOF/RDB work with INFO, which through the proxy shows
# one server: before DEBUG (LOADAOF, RELOAD, ...) wait for every server.
proc codis_wait_persistence {addr} {
    for {set i 0} {$i < 1000} {incr i} {
        set info [codis_backend_call $addr info persistence]
        if {[string match "*aof_rewrite_in_progress:0*" $info] && [string match "*aof_rewrite_scheduled:0*" $info]
            && [string match "*rdb_bgsave_in_progress:0*" $info]} {
            return
        }
        after 10
    }
}
rename r codis_proxy_r
proc r {args} {
    set level 0
    if {[string is integer -strict [lindex $args 0]]} {
        set level [lindex $args 0]
        set args [lrange $args 1 end]
    }
    set cmd [string tolower [lindex $args 0]]
    set sub [string tolower [lindex $args 1]]
    if {[llength $::codis_backends] == 0 || ($cmd ne "config" && $cmd ne "debug")} {
        return [codis_proxy_r $level {*}$args]
    }
    if {$cmd eq "debug" && $sub in {object sdslen digest-value listpack quicklist ziplist}} {
        set n [expr {[llength $::codis_backends] > 1 && [codis_slot [lindex $args 2]] >= 512 ? 1 : 0}]
        return [codis_backend_call [lindex $::codis_backends $n] {*}$args]
    }
    if {$cmd eq "debug" && $sub eq "digest"} {
        set all {}
        foreach addr $::codis_backends { lappend all [codis_backend_call $addr {*}$args] }
        return [join $all ""]
    }
    if {($cmd eq "config" && $sub eq "get") || ($cmd eq "debug" && $sub in {protocol stringmatch-len jmap})} {
        return [codis_backend_call [lindex $::codis_backends 0] {*}$args]
    }
    foreach addr $::codis_backends {
        if {$cmd eq "debug"} { codis_wait_persistence $addr }
        set res [codis_backend_call $addr {*}$args]
    }
    return $res
}
# Deferring clients: CONFIG and DEBUG run at once through `r`; their reply (or error)
# waits for the next `read`, as if the server had answered it.
rename redis_deferring_client codis_proxy_redis_deferring_client
proc redis_deferring_client {args} {
    set rd [codis_proxy_redis_deferring_client {*}$args]
    if {[llength $::codis_backends] == 0} { return $rd }
    set w "::codis_rd_[incr ::codis_rd_seq]"
    set ::codis_rd_pending($w) {}
    proc $w {args} [format {
        set rd %s
        set w %s
        set cmd [string tolower [lindex $args 0]]
        if {$cmd eq "config" || $cmd eq "debug"} {
            set failed [catch {r {*}$args} res]
            lappend ::codis_rd_pending($w) [list $failed $res]
            return
        }
        if {$cmd eq "read" && [llength $::codis_rd_pending($w)] > 0} {
            lassign [lindex $::codis_rd_pending($w) 0] failed res
            set ::codis_rd_pending($w) [lrange $::codis_rd_pending($w) 1 end]
            if {$failed} { error $res }
            return $res
        }
        return [$rd {*}$args]
    } [list $rd] [list $w]]
    return $w
}
'''


def fetch_suite():
    """Debian's source package of redis, unpacked once under tmp/redis-suite, with the
    adapter put (again, so that it is this script's version) into test_helper.tcl."""
    src = os.path.join(CACHE, "redis-7.0.15")
    if not os.path.exists(os.path.join(src, "runtest")):
        os.makedirs(os.path.join(CACHE, "apt", "lists", "partial"), exist_ok=True)
        sources = os.path.join(CACHE, "apt", "sources.list")
        with open(sources, "w") as f:
            f.write("deb-src http://deb.debian.org/debian bookworm main\n")
        apt = ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
               "-o", f"Dir::State::Lists={os.path.join(CACHE, 'apt', 'lists')}"]
        subprocess.run(["apt-get", *apt, "update", "-qq"], check=True)
        subprocess.run(["apt-get", *apt, "source", "--download-only", "redis"], cwd=CACHE, check=True,
                       stdout=subprocess.DEVNULL)
        orig = [f for f in os.listdir(CACHE) if f.startswith("redis_7.0.15") and f.endswith(".orig.tar.gz")]
        if not orig:
            sys.exit("apt-get source redis did not give redis_7.0.15.orig.tar.gz: is bookworm's deb-src reachable?")
        with tarfile.open(os.path.join(CACHE, orig[0])) as t:
            t.extractall(CACHE, filter="data")
    helper = os.path.join(src, "tests", "test_helper.tcl")
    if not os.path.exists(helper + ".orig"):
        shutil.copy(helper, helper + ".orig")
    with open(helper + ".orig") as f:
        text = f.read()
    # the adapter goes before the file's main part, which runs the tests
    main_part = "\nif {$::client} {"
    if main_part not in text:
        sys.exit(f"{helper} changed: no '{main_part.strip()}' to put the adapter before")
    with open(helper, "w") as f:
        f.write(text.replace(main_part, ADAPTER + main_part, 1))
    return src


def start_redis(tmp, name, port=None):
    """A redis-server in its own directory; with `port`, a fresh one on that port."""
    port = port or free_port()
    d = os.path.join(tmp, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
                          "--appendonly", "no", "--enable-debug-command", "yes", "--logfile", os.path.join(d, "log")],
                         stdout=subprocess.DEVNULL)
    wait_port(port)
    return p, port


def start_proxy(tmp, backends):
    port, admin = free_port(), free_port()
    slots = [{"id": i, "backend_addr": backends[0] if i < 512 else backends[1],
              "backend_addr_group_id": 1 if i < 512 else 2} for i in range(1024)]
    with open(os.path.join(tmp, "slots.json"), "w") as f:
        json.dump(slots, f)
    with open(os.path.join(tmp, "proxy.toml"), "w") as f:
        f.write(f'product_name = "suite"\nproxy_addr = "127.0.0.1:{port}"\nadmin_addr = "127.0.0.1:{admin}"\n'
                'session_allow_keyspace_commands = true\n')
    p = subprocess.Popen([os.path.join(BIN, "codis-proxy"), "--config",
                          os.path.join(tmp, "proxy.toml"), "--fillslots", os.path.join(tmp, "slots.json"),
                          "--ncpu", "1", "--log", os.path.join(tmp, "proxy.log")])
    wait_port(port)
    return p, port


def wait_proxy(port, timeout=20):
    """Polls until the proxy serves both groups again (it reconnects by itself);
    `foo` is in slot 289, `a` in slot 579."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["redis-cli", "-p", str(port), "MGET", "foo", "a"], capture_output=True, text=True)
        if out.returncode == 0 and "ERR" not in out.stdout:
            return
        time.sleep(0.05)
    sys.exit(f"codis-proxy on {port} does not reach its backends")


# Why a test fails only through the proxy, recognised from its message: (pattern, cause).
CAUSES = [
    (r"SYNC' is not allowed|replication_stream", "reads the replication stream (SYNC), which a proxy does not serve"),
    (r"'(BGREWRITEAOF|BGSAVE|SAVE|SHUTDOWN|MONITOR|SWAPDB|MOVE|ACL)' is not allowed",
     "a server administration command the proxy refuses (as Codis)"),
    (r"'(CONFIG|DEBUG)' is not allowed", "CONFIG/DEBUG sent on a connection the adapter does not reroute"),
    (r"CROSSSLOT", "keys on two groups without a common hash tag (refused, as Redis Cluster does)"),
    (r"calls can not be nested|WATCH inside MULTI|keys already watched",
     "left in MULTI or WATCH by an earlier failure in the same unit"),
    (r"blocked clients|errorr?stat|Target dbsize|expected_commands|cmdstat|Expected .* == \d+ \(context.*\[s ",
     "reads INFO, which through the proxy describes one group's server"),
    (r"Expected 'PONG' to match 'BUSY|BUSY Redis is busy running a script",
     "PING is answered by the proxy, which does not see a busy server; the script the test "
     "then leaves running fails the tests after it"),
    (r"EXECABORT|to match .OOM", "MULTI is queued by the proxy: errors a server finds while queueing (OOM) come at EXEC"),
    (r"is not supported by codis-proxy", "a CLIENT subcommand the proxy does not serve"),
    (r"the unit stopped before this test", "the unit stopped early"),
]


def cause_of(detail):
    for pattern, cause in CAUSES:
        if re.search(pattern, detail):
            return cause
    return "other (see the message)"


RESULT = re.compile(r"^\[(ok|err|exception|skip|ignore)\]: (.*?)(?: \(\d+ ms\))?$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_unit(src, unit, port, backends, log):
    """Runs one unit in external mode; writes its output to `log`."""
    env = dict(os.environ, CODIS_SUITE_BACKENDS=" ".join(backends))
    cmd = ["./runtest", "--host", "127.0.0.1", "--port", str(port), "--singledb", "--durable", "--tags", "-slow",
           "--timeout", "120", "--single", unit]
    try:
        out = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=900).stdout
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        out += "\n[exception]: unit timed out after 900 s\n"
    with open(log, "w") as f:
        f.write(out)


def parse(log):
    """{test name: [status, the first lines of its error]} from a unit's output."""
    with open(log) as f:
        out = f.read()
    results, last, detail = {}, None, []
    for line in ANSI.sub("", out).splitlines():
        m = RESULT.match(line.strip())
        if m:
            status, name = m.groups()
            name = re.sub(r" in tests/\S+\.tcl$", "", name)  # failures name their file
            results.setdefault(name, [status, ""])
            if results[name][0] == "ok" and status != "ok":
                results[name][0] = status
            last, detail = name, []
        elif last and results[last][0] in ("err", "exception") and line.strip() and len(detail) < 2:
            detail.append(line.strip())
            results[last][1] = " / ".join(detail)[:300]
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", default=",".join(UNITS), help="comma-separated units (tests/unit/... without .tcl)")
    ap.add_argument("--report", help="also write the Markdown report here")
    ap.add_argument("--logs", help="only report, from the logs of an earlier run in this directory")
    opts = ap.parse_args()
    need(["redis-server", "tclsh", "apt-get"], "redis-server tcl")
    if opts.logs:
        return report(opts, opts.logs)
    src = fetch_suite()
    build_release("codis-proxy")
    tmp = tempfile.mkdtemp(prefix="redis-suite-")
    procs = []
    try:
        direct, direct_port = start_redis(tmp, "direct")
        g1, g1_port = start_redis(tmp, "group1")
        g2, g2_port = start_redis(tmp, "group2")
        procs += [direct, g1, g2]
        backends = [f"127.0.0.1:{g1_port}", f"127.0.0.1:{g2_port}"]
        proxy, proxy_port = start_proxy(tmp, backends)
        procs.append(proxy)
        for unit in opts.units.split(","):
            name = unit.replace("/", "_")
            # Fresh servers for every unit: a unit that fails half-way may leave a
            # setting behind (maxmemory 1, say) that would fail the next ones.
            for p in procs[:3]:
                p.terminate()
                p.wait()
            direct, _ = start_redis(tmp, "direct", direct_port)
            g1, _ = start_redis(tmp, "group1", g1_port)
            g2, _ = start_redis(tmp, "group2", g2_port)
            procs[:3] = [direct, g1, g2]
            wait_proxy(proxy_port)
            run_unit(src, unit, direct_port, [f"127.0.0.1:{direct_port}"], os.path.join(tmp, f"{name}.direct.log"))
            run_unit(src, unit, proxy_port, backends, os.path.join(tmp, f"{name}.proxy.log"))
            print(f"{unit} done", flush=True)
        report(opts, tmp)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def report(opts, logs):
    """Pass counts per unit and the proxy-only failures with their causes."""
    lines = ["| unit | direct ok | proxy ok | proxy-only failures |", "|---|---|---|---|"]
    failures = []
    totals = [0, 0, 0]
    for unit in opts.units.split(","):
        name = unit.replace("/", "_")
        d = parse(os.path.join(logs, f"{name}.direct.log"))
        p = parse(os.path.join(logs, f"{name}.proxy.log"))
        d_ok = sum(1 for s, _ in d.values() if s == "ok")
        p_ok = sum(1 for s, _ in p.values() if s == "ok")
        only = [(t, p[t][0], p[t][1]) for t in p if p[t][0] in ("err", "exception") and d.get(t, ["ok"])[0] == "ok"]
        # tests the proxy run never reached (a unit aborted early) count as failures too
        missing = [t for t, (s, _) in d.items() if s == "ok" and t not in p]
        stopped = next((v[1] for t, v in p.items() if v[0] == "exception"), "")
        only += [(t, "not run", f"the unit stopped before this test ({stopped})") for t in missing]
        totals[0] += d_ok
        totals[1] += p_ok
        totals[2] += len(only)
        lines.append(f"| {unit} | {d_ok} | {p_ok} | {len(only)} |")
        failures += [(unit, *f) for f in only]
    lines.append(f"| **total** | **{totals[0]}** | **{totals[1]}** | **{totals[2]}** |")
    report = ["# Redis 7.0.15 Tcl suite: codis-proxy (2 groups) vs one redis-server", "",
              "`bench/redis-suite.py`, external mode, `--tags -slow`; logs in " + logs, "", *lines, "",
              "## Failures through the proxy only", ""]
    causes = {}
    for u, t, st, detail in failures:
        causes.setdefault(cause_of(detail), []).append((u, t, st, detail))
    by_count = sorted(causes.items(), key=lambda kv: -len(kv[1]))
    report += ["| cause | tests |", "|---|---|", *(f"| {c} | {len(v)} |" for c, v in by_count), ""]
    for c, v in by_count:
        report += [f"### {c}", "", *(f"- `{u}` {t!r}: {st}: {detail}" for u, t, st, detail in v), ""]
    if not failures:
        report.append("none")
    text = "\n".join(report) + "\n"
    print(text)
    if opts.report:
        with open(opts.report, "w") as f:
            f.write(text)

if __name__ == "__main__":
    main()
