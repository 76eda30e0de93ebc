"""Helpers the benchmark scripts share: free loopback ports, waiting for listeners,
the dashboard's REST API, redis-cli and redis-benchmark calls, process CPU and memory."""
import json, os, shutil, signal, socket, subprocess, sys, time, urllib.error, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def need(tools, install):
    """Exits with the apt-get line to run when one of `tools` is not on the PATH."""
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install {install}")


def build_release(*crates):
    """Builds the workspace crates a benchmark runs, in release mode, into BIN."""
    subprocess.run(["cargo", "build", "--release", "-q", *(a for c in crates for a in ("-p", c))], cwd=ROOT, check=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20):
    """Polls until something accepts connections on the port; exits the script if not."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on port {port}")


def api(dashboard, path, body=None, method="PUT"):
    """Calls the dashboard's REST API; exits the script with the dashboard's cause."""
    req = urllib.request.Request(f"http://{dashboard}{path}", data=body.encode() if body else None, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        sys.exit(f"dashboard call {path} failed: {e.read().decode()}")


def redis(port, *args, check=False):
    """One redis-cli call; its output without the trailing newline."""
    r = subprocess.run(["redis-cli", "-p", str(port), *map(str, args)], capture_output=True, text=True, check=check)
    return r.stdout.strip()


def stop_all(procs, tmp):
    """Stops the processes (SIGTERM, then SIGKILL after 10 s) and removes their
    directory, unless KEEP is set in the environment."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    if os.environ.get("KEEP"):
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def cpu_seconds(pid):
    """User plus system CPU seconds a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    """Resident memory of a process in MiB."""
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench(port, args, n, clients, pipeline):
    """One redis-benchmark run (`args` like ["-t", "set,get"]); requests/s per test."""
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-n", str(n),
           "-r", "100000", "-P", str(pipeline), "--csv"] + args
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = [l.split('","') for l in out.strip().splitlines()[1:]]
    return {r[0].strip('"'): float(r[1]) for r in rows}
