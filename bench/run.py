#!/usr/bin/env python3
"""The caddy-wsgi benchmark driver. Run it through bench/run.sh, which installs what it needs.

Starts each contender (a server, or Caddy in front of one) on 127.0.0.1, drives it with wrk
(HTTP/1.1), h2load (HTTP/2 over TLS) or bench/wsload (WebSocket echo round trips) for a fixed
time at a fixed concurrency after a short warm-up, samples the server's process tree (CPU
from /proc/<pid>/stat, RSS from /proc/<pid>/status every 100 ms), stops it (process groups, then any stray pid of its tree),
and writes bench/results/<timestamp>.{md,json}, latest.{md,json,png}. `--write-docs` turns
the latest results into docs/benchmarks.md (and docs/benchmarks.png).
"""
import argparse
import atexit
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BUILD = BENCH / ".build"
VENV = BENCH / ".venv"
VENV312 = BENCH / ".venv312"  # caddy-snake's ASGI workers: asyncio.run(loop_factory=) needs Python 3.12
APPS = BENCH / "apps"
CADDYFILES = BENCH / "caddy"
RESULTS = BENCH / "results"
DOCS = ROOT / "docs"
MIB = 1024 * 1024
CLK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

# ---------------------------------------------------------------------------------------------
# Contenders and workloads
# ---------------------------------------------------------------------------------------------

# kind: wsgi (caddy-wsgi), asgi (caddy-asgi), proxy (Caddy reverse_proxy -> upstream), alone (a Python
# server), respond (Caddy without Python: the reference), snake (caddy-snake, WSGI or ASGI).
# workloads: the only workloads a contender has cells in (granian-h2: hello-h2); tls: it serves HTTPS itself;
# venv: the venv of its Python workers when not bench/.venv.
# iface: the interface of the contender's app, wsgi or asgi: a contender runs only the workloads of
# its interface (None: the Caddy reference, which runs both).
CONTENDERS = [
    dict(name="caddy-wsgi", kind="wsgi", iface="wsgi", threads=1, desc="Caddy `wsgi` directive, `workers N`"),
    dict(name="caddy-wsgi-threads", kind="wsgi", iface="wsgi", threads="T", desc="Caddy `wsgi` directive, `workers N`, `threads T`"),
    dict(name="caddy+gunicorn-sync", kind="proxy", iface="wsgi", upstream="gunicorn-sync", desc="Caddy `reverse_proxy` → Gunicorn sync `-w N`"),
    dict(name="caddy+gunicorn-gthread", kind="proxy", iface="wsgi", upstream="gunicorn-gthread", desc="Caddy `reverse_proxy` → Gunicorn gthread `-w N --threads T`"),
    dict(name="gunicorn-sync", kind="alone", iface="wsgi", upstream="gunicorn-sync", desc="Gunicorn sync `-w N` alone"),
    dict(name="granian", kind="alone", iface="wsgi", upstream="granian", desc="Granian `--interface wsgi --workers N` alone"),
    dict(name="caddy+granian", kind="proxy", iface="wsgi", upstream="granian", desc="Caddy `reverse_proxy` → Granian `--workers N`"),
    dict(name="uwsgi", kind="alone", iface="wsgi", upstream="uwsgi", desc="uWSGI `--http-socket`, `--processes N` alone"),
    dict(name="granian-h2", kind="alone", iface="wsgi", upstream="granian-h2", tls=True, workloads=("hello-h2",),
         desc="Granian `--interface wsgi --workers N --http 2` with its own TLS (`--ssl-certificate`, a self-signed "
              "P-256 certificate) alone: Granian as a user choosing it instead of Caddy would run it for HTTP/2"),
    dict(name="caddy-snake", kind="snake", iface="wsgi", caddyfile="snake",
         desc="caddy-snake `python { module_wsgi <app>; workers N }` (built from its source tarball)"),
    dict(name="caddy-asgi", kind="asgi", iface="asgi", desc="Caddy `asgi` directive, `workers N` (one asyncio loop per worker)"),
    dict(name="caddy+uvicorn", kind="proxy", iface="asgi", upstream="uvicorn",
         desc="Caddy `reverse_proxy` → Uvicorn `--workers N` (uvloop, httptools)"),
    dict(name="uvicorn", kind="alone", iface="asgi", upstream="uvicorn", desc="Uvicorn `--workers N` (uvloop, httptools) alone"),
    dict(name="granian-asgi", kind="alone", iface="asgi", upstream="granian-asgi", desc="Granian `--interface asgi --workers N` alone"),
    dict(name="hypercorn", kind="alone", iface="asgi", upstream="hypercorn", desc="Hypercorn `--workers N -k uvloop` alone"),
    dict(name="caddy-snake-asgi", kind="snake", iface="asgi", caddyfile="snake-asgi", venv=VENV312,
         desc="caddy-snake `python { module_asgi <app>; workers N }` (its default runtime, uvloop; built from its source tarball)"),
    dict(name="caddy-respond", kind="respond", iface=None, desc="Caddy `respond` / `file_server`, no Python (reference, not a peer)"),
]
CONTENDER = {c["name"]: c for c in CONTENDERS}

GROUP_APP = {"plain": "app:application", "flask": "flask_app:application", "django": "django_app:application",
             "asgi": "asgi_app:app", "fastapi": "fastapi_app:app"}
GROUP_READY = {"plain": "/hello", "flask": "/flask/json", "django": "/django/items", "asgi": "/hello",
               "fastapi": "/fastapi/json"}

PYTHON_KINDS = ("wsgi", "proxy", "alone", "snake")
CADDY_KINDS = ("wsgi", "proxy", "respond", "snake")
ASGI_KINDS = ("asgi", "proxy", "alone", "snake")

# iface: wsgi or asgi (the contenders that run it). conns: "C" = --connections, "B" = --big-connections.
# tool: wrk (default), h2load or wsload (bench/wsload, WebSocket round trips).
WORKLOADS = [
    dict(name="hello", iface="wsgi", group="plain", path="/hello", conns="C", kinds=PYTHON_KINDS + ("respond",), quick=True,
         desc="13-byte `Hello, world!`, keep-alive"),
    dict(name="hello-close", iface="wsgi", group="plain", path="/hello", conns="C", close=True, kinds=PYTHON_KINDS + ("respond",),
         desc="13-byte hello world, `Connection: close` (a new TCP connection per request)"),
    dict(name="hello-h2", iface="wsgi", group="plain", path="/hello", conns="C", tool="h2load", kinds=CADDY_KINDS,
         quick=True, desc="13-byte hello world over HTTP/2 + TLS (h2load, one stream per connection); Caddy-fronted "
                          "contenders (`tls internal`) and Granian with its own TLS and HTTP/2 (granian-h2)"),
    dict(name="json4k", iface="wsgi", group="plain", path="/json4k", conns="C", kinds=PYTHON_KINDS + ("respond",),
         desc="4 KiB JSON serialised by `json.dumps` on every request (Caddy `respond`: the same bytes, static)"),
    dict(name="slow", iface="wsgi", group="plain", path="/slow", conns="C", kinds=PYTHON_KINDS,
         desc="`time.sleep(0.05)` per request: bound by threads (N×T/0.05 s), not CPU"),
    dict(name="flask", iface="wsgi", group="flask", path="/flask/json", conns="C", kinds=PYTHON_KINDS, quick=True,
         desc="Flask JSON view (`jsonify`, a query argument)"),
    dict(name="django", iface="wsgi", group="django", path="/django/items", conns="C", kinds=PYTHON_KINDS, quick=True,
         desc="Django template view: ORM query of 10 rows from SQLite, rendered with a template"),
    dict(name="stream-1m", iface="wsgi", group="plain", path="/stream?mib=1", conns="C", kinds=PYTHON_KINDS, bytes=MIB,
         desc="1 MiB streamed from a generator (64 KiB blocks)"),
    dict(name="stream-100m", iface="wsgi", group="plain", path="/stream?mib=100", conns="B", kinds=PYTHON_KINDS, bytes=100 * MIB,
         desc="100 MiB streamed from a generator (64 KiB blocks), low concurrency"),
    dict(name="upload-10m", iface="wsgi", group="plain", path="/upload", conns="B", upload=10 * MIB, kinds=PYTHON_KINDS, quick=True,
         desc="POST of a 10 MiB body, read whole by the app (wrk + Lua), low concurrency"),
    dict(name="file-100m", iface="wsgi", group="plain", path="/file", conns="B", kinds=PYTHON_KINDS + ("respond",), bytes=100 * MIB,
         desc="100 MiB file via `wsgi.file_wrapper` (Caddy: `file_server` on the same file), low concurrency"),
    dict(name="asgi-hello", iface="asgi", group="asgi", path="/hello", conns="C", kinds=ASGI_KINDS + ("respond",), quick=True,
         desc="13-byte `Hello, world!` from a raw ASGI 3 app (no framework), keep-alive"),
    dict(name="fastapi-json", iface="asgi", group="fastapi", path="/fastapi/json", conns="C", kinds=ASGI_KINDS, quick=True,
         desc="FastAPI JSON view (`async def`, a typed query argument, a pydantic response model of 10 items)"),
    dict(name="ws-echo", iface="asgi", group="asgi", path="/ws", conns="C", tool="wsload", kinds=ASGI_KINDS, quick=True,
         desc="WebSocket echo (raw ASGI): each connection sends a 13-byte text message and waits for its echo, "
              "back to back (bench/wsload); figures are round trips/s and round-trip latency"),
]
WORKLOAD = {w["name"]: w for w in WORKLOADS}


def applies(c, w):
    """Whether contender c runs workload w (else the cell is n/a, or absent for another interface)."""
    if not same_iface(c, w):
        return False
    if c.get("tls"):  # serves HTTPS itself (granian-h2): the HTTP/2 workload only
        return w.get("tool") == "h2load"
    return c["kind"] in w["kinds"]


def same_iface(c, w):
    """Whether contender c has a cell (run or n/a) in workload w: same interface, and w among its
    workloads when it lists them."""
    if c.get("workloads") and w["name"] not in c["workloads"]:
        return False
    return c.get("iface") in (None, w.get("iface", "wsgi"))


def iface_of(wname):
    return WORKLOAD[wname].get("iface", "wsgi") if wname in WORKLOAD else "wsgi"

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def log(*a):
    print(*a, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def first_line(cmd):
    try:
        r = sh(cmd, timeout=20)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return "unavailable (%s)" % e


def read_stat(pid):
    """(ppid, utime+stime+cutime+cstime in seconds) or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    # rest[0] is field 3 (state): ppid=4, utime=14, stime=15, cutime=16, cstime=17
    ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    return int(rest[1]), ticks / CLK


def ppid_map():
    m = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st:
                m[int(name)] = st[0]
    return m


def tree(roots):
    """Pids of the roots and all their descendants that are alive now."""
    m = ppid_map()
    kids = {}
    for pid, ppid in m.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [r for r in roots if r in m]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(roots):
    """utime+stime of every live process of the trees, plus what they reaped (cutime+cstime)."""
    total = 0.0
    for pid in tree(roots):
        st = read_stat(pid)
        if st:
            total += st[1]
    return total


def system_busy():
    """(task CPU seconds, irq+softirq seconds) of the whole machine (all CPUs), from /proc/stat.

    Task time is user+nice+system+steal; irq and softirq (most of the loopback TCP work) are
    not charged to any process, so they are kept apart."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[7]) / CLK, (v[5] + v[6]) / CLK


def rss_kib(pid):
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return None


def comm(pid):
    try:
        return Path("/proc/%d/comm" % pid).read_text().strip()
    except OSError:
        return "?"


class Sampler(threading.Thread):
    """Peak RSS of every process of the trees, sampled every 100 ms (VmRSS, via statm)."""

    def __init__(self, roots, front):
        super().__init__(daemon=True)
        self.roots, self.front = list(roots), front
        self.peak, self.names = {}, {}
        self.peak_total = 0
        self.halt = threading.Event()

    def sample(self):
        total = 0
        for pid in tree(self.roots):
            kib = rss_kib(pid)
            if kib is None:
                continue
            total += kib
            if kib > self.peak.get(pid, 0):
                self.peak[pid] = kib
            if pid not in self.names:
                self.names[pid] = comm(pid)
        self.peak_total = max(self.peak_total, total)

    def run(self):
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(0.1)

    def stop(self):
        self.halt.set()
        self.join()
        self.sample()
        workers = {p: k for p, k in self.peak.items() if p not in self.roots}
        return dict(
            rss_front_mib=self.peak.get(self.front, 0) / 1024,
            rss_worker_max_mib=(max(workers.values()) / 1024) if workers else None,
            rss_total_mib=self.peak_total / 1024,
            workers=len(workers),
            worker_names=sorted(set(self.names.get(p, "?") for p in workers)),
        )


# ---------------------------------------------------------------------------------------------
# Process management: every server runs in its own session/process group
# ---------------------------------------------------------------------------------------------

LIVE = []  # Popen objects still to stop


def spawn(cmd, env, logfile, cwd=None):
    f = open(logfile, "ab")
    f.write(("\n$ %s\n" % " ".join(shlex.quote(c) for c in cmd)).encode())
    f.flush()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                         start_new_session=True)
    f.close()
    LIVE.append(p)
    return p


def stop(p, grace=5.0):
    """SIGTERM the group, then SIGKILL the group and every pid of its tree that is left."""
    pids = tree([p.pid])
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.time() + wait
        while time.time() < deadline and p.poll() is None:
            time.sleep(0.05)
        if p.poll() is not None and not [q for q in pids if read_stat(q)]:
            break
    p.poll()
    for q in pids + tree([p.pid]):
        if read_stat(q):
            try:
                os.kill(q, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        p.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    if p in LIVE:
        LIVE.remove(p)


def stop_all():
    for p in reversed(list(LIVE)):
        stop(p, grace=2.0)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------


class Env:
    """Everything a run needs to know: paths, binaries, options."""

    def __init__(self, args):
        self.args = args
        self.caddy = os.environ.get("CADDY_BIN") or str(BUILD / "caddy")
        self.snake = BUILD / "caddy-snake"
        self.wsload = BUILD / "wsload"
        self.python = str(VENV / "bin" / "python")
        self.file = BUILD / "data" / "file100m.bin"
        self.logs = BUILD / "logs"
        self.json4k = None


def base_env(env, extra=None):
    e = dict(os.environ)
    e.pop("VIRTUAL_ENV", None)
    e.update(
        BENCH_FILE=str(env.file),
        BENCH_DJANGO_DB=str(BUILD / "djbench.sqlite3"),
        PYTHONDONTWRITEBYTECODE="1",
        XDG_DATA_HOME=str(BUILD / "caddy-home" / "data"),
        XDG_CONFIG_HOME=str(BUILD / "caddy-home" / "config"),
    )
    e.update(extra or {})
    return e


def upstream_cmd(env, which, app, port):
    a, n, t = env.args, str(env.args.procs), str(env.args.threads)
    v = VENV / "bin"
    if which == "gunicorn-sync":
        return [str(v / "gunicorn"), "-w", n, "-b", "127.0.0.1:%d" % port, "--chdir", str(APPS),
                "--log-level", "warning", app]
    if which == "gunicorn-gthread":
        return [str(v / "gunicorn"), "-w", n, "-k", "gthread", "--threads", t, "-b", "127.0.0.1:%d" % port,
                "--chdir", str(APPS), "--log-level", "warning", app]
    if which == "granian":
        return [str(v / "granian"), "--interface", "wsgi", "--workers", n, "--host", "127.0.0.1", "--port", str(port),
                "--working-dir", str(APPS), "--no-ws", "--log-level", "warning", app]
    if which == "granian-h2":
        cert, key = tls_cert()
        return [str(v / "granian"), "--interface", "wsgi", "--workers", n, "--host", "127.0.0.1", "--port", str(port),
                "--working-dir", str(APPS), "--no-ws", "--log-level", "warning", "--http", "2",
                "--ssl-certificate", str(cert), "--ssl-keyfile", str(key), app]
    if which == "uvicorn":
        return [str(v / "uvicorn"), "--workers", n, "--host", "127.0.0.1", "--port", str(port), "--app-dir", str(APPS),
                "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--log-level", "warning",
                "--no-access-log", app]
    if which == "granian-asgi":
        return [str(v / "granian"), "--interface", "asgi", "--workers", n, "--host", "127.0.0.1", "--port", str(port),
                "--working-dir", str(APPS), "--loop", "uvloop", "--log-level", "warning", app]
    if which == "hypercorn":
        # hypercorn has no --app-dir: a path before the module name puts its directory on sys.path
        return [str(v / "hypercorn"), "--workers", n, "-k", "uvloop", "--bind", "127.0.0.1:%d" % port,
                "--log-level", "warning", str(APPS / app)]
    if which == "uwsgi":
        return [str(v / "uwsgi"), "--http-socket", "127.0.0.1:%d" % port, "--master", "--processes", n,
                "--home", str(VENV), "--chdir", str(APPS), "--module", app, "--need-app", "--die-on-term",
                "--disable-logging", "--add-header", "Connection: close"]
    raise ValueError(which)


def tls_cert():
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 (what Caddy's `tls internal` issues is P-256
    too) for the servers that do their own TLS; made once with the openssl CLI in bench/.build/tls."""
    d = BUILD / "tls"
    cert, key = d / "cert.pem", d / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    d.mkdir(parents=True, exist_ok=True)
    if not shutil.which("openssl"):
        raise RuntimeError("openssl is not installed (apt-get install openssl): no certificate for granian-h2")
    r = sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "3650", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1"], timeout=60)
    if r.returncode:
        raise RuntimeError("openssl req failed: " + (r.stderr or r.stdout).strip()[-300:])
    return cert, key


def caddy_env(env, c, app, http_port, https_port, upstream_port=None):
    threads = env.args.threads if c.get("threads") == "T" else 1
    extra = dict(
        BENCH_HTTP_PORT=str(http_port), BENCH_HTTPS_PORT=str(https_port),
        BENCH_CADDY_DATA=str(BUILD / "caddy-data"), BENCH_APP=app, BENCH_APPS_DIR=str(APPS),
        BENCH_VENV=str(c.get("venv", VENV)), BENCH_WORKERS=str(env.args.procs), BENCH_THREADS=str(threads),
        BENCH_FILE_NAME=env.file.name, BENCH_FILE_DIR=str(env.file.parent), BENCH_JSON4K=env.json4k,
    )
    if upstream_port:
        extra["BENCH_UPSTREAM"] = "127.0.0.1:%d" % upstream_port
    return extra


def wait_ready(url, procs, timeout=90.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError("exited with status %s before it was ready" % p.returncode)
        if url.startswith("https:"):  # a server with only HTTP/2 over TLS (granian-h2): curl, not urllib
            r = sh(["curl", "-sk", "--http2", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                    url], timeout=30)
            if r.stdout.strip() == "2 200":
                return
            last = (r.stdout + " " + r.stderr).strip()[:200]
            time.sleep(0.1)
            continue
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
                if r.status == 200:
                    return
                last = "HTTP %d" % r.status
        except Exception as e:  # noqa: BLE001
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError("not ready after %.0fs (%s)" % (timeout, last))


CADDYFILE = {"wsgi": "wsgi", "asgi": "asgi", "proxy": "proxy", "respond": "respond", "snake": "snake"}


class Server:
    """One running contender for one app group."""

    def __init__(self, env, c, group):
        self.env, self.c, self.group = env, c, group
        self.procs, self.commands = [], []
        self.front = None
        self.http_port = self.https_port = None

    def start(self):
        env, c, group = self.env, self.c, self.group
        app = GROUP_APP[group]
        logfile = env.logs / ("%s-%s.log" % (c["name"], group))
        logfile.write_text("")
        self.logfile = logfile
        kind = c["kind"]
        self.http_port = free_port()
        if kind in ("proxy", "alone"):
            up = self.http_port if kind == "alone" else free_port()
            cmd = upstream_cmd(env, c["upstream"], app, up)
            p = spawn(cmd, base_env(env), logfile)
            self.procs.append(p)
            self.commands.append(cmd)
            if c.get("tls"):
                self.https_port = up
            wait_ready("%s://127.0.0.1:%d%s" % ("https" if c.get("tls") else "http", up, GROUP_READY[group]), self.procs)
            if kind == "alone":
                self.front = p.pid
                return
            upstream_port = up
        else:
            upstream_port = None
        self.https_port = free_port()
        caddyfile = c.get("caddyfile") or CADDYFILE[kind]
        binary = str(env.snake) if kind == "snake" else env.caddy
        cmd = [binary, "run", "--adapter", "caddyfile", "--config", str(CADDYFILES / (caddyfile + ".Caddyfile"))]
        extra = caddy_env(env, c, app, self.http_port, self.https_port, upstream_port)
        p = spawn(cmd, base_env(env, extra), logfile, cwd=str(CADDYFILES))
        self.procs.insert(0, p)
        self.front = p.pid
        self.caddy_vars = {k: v for k, v in extra.items() if k != "BENCH_JSON4K"}
        self.commands.insert(0, cmd)
        wait_ready("http://127.0.0.1:%d%s" % (self.http_port, GROUP_READY[group]), self.procs)

    @property
    def roots(self):
        return [p.pid for p in self.procs]

    def alive(self):
        return all(p.poll() is None for p in self.procs)

    def stop(self):
        for p in list(self.procs):
            stop(p)

    def log_tail(self, n=8):
        try:
            lines = self.logfile.read_text(errors="replace").strip().splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""


# ---------------------------------------------------------------------------------------------
# Load tools
# ---------------------------------------------------------------------------------------------

LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""

LUA_UPLOAD = """
wrk.method = "POST"
wrk.body = string.rep("x", %d)
wrk.headers["Content-Type"] = "application/octet-stream"
"""


def lua_script(w):
    text = (LUA_UPLOAD % w["upload"] if w.get("upload") else "") + LUA_DONE
    path = BUILD / "lua" / ("%s.lua" % w["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_cmd(env, w, server, duration, conns):
    if w.get("tool") == "wsload":
        return [str(env.wsload), "-url", "ws://127.0.0.1:%d%s" % (server.http_port, w["path"]), "-c", str(conns),
                "-d", "%ds" % duration, "-timeout", "10s"]
    if w.get("tool") == "h2load":
        return ["h2load", "-c", str(conns), "-m", "1", "-t", "1", "-D", str(duration),
                "https://127.0.0.1:%d%s" % (server.https_port, w["path"])]
    timeout = "60s" if conns == env.args.big_connections else "10s"
    cmd = ["wrk", "-t1", "-c", str(conns), "-d", "%ds" % duration, "--timeout", timeout, "-s", str(lua_script(w))]
    if w.get("close"):
        cmd += ["-H", "Connection: close"]
    return cmd + ["http://127.0.0.1:%d%s" % (server.http_port, w["path"])]


def run_load(cmd, duration, logpath=None):
    if cmd[0] == "h2load" and logpath:
        cmd = cmd[:-1] + ["--log-file", str(logpath)] + cmd[-1:]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    LIVE.append(p)
    try:
        out, _ = p.communicate(timeout=duration + 90)
    except subprocess.TimeoutExpired:
        stop(p, grace=1)
        raise RuntimeError("load tool did not finish in time")
    finally:
        if p in LIVE:
            LIVE.remove(p)
    return p.returncode, out


def parse_wrk(out):
    m = re.search(r"^BENCHJSON (\{.*\})$", out, re.M)
    if not m:
        raise RuntimeError("wrk: " + out.strip()[-300:])
    d = json.loads(m.group(1))
    dur = d["duration_us"] / 1e6
    errs = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    return dict(
        requests=d["requests"], duration_s=dur, rps=d["requests"] / dur, bytes_in=d["bytes"],
        p50_ms=d["p50"] / 1000, p90_ms=d["p90"] / 1000, p99_ms=d["p99"] / 1000, max_ms=d["max"] / 1000,
        mean_ms=d["mean"] / 1000, errors=errs,
        error_detail={k: d[k] for k in ("connect", "read", "write", "status", "timeout") if d[k]},
    )


def parse_wsload(out):
    """The WSLOAD line of bench/wsload: round trips take the place of requests."""
    m = re.search(r"^WSLOAD (\{.*\})$", out, re.M)
    if not m:
        raise RuntimeError("wsload: " + out.strip()[-300:])
    d = json.loads(m.group(1))
    dur = d["duration_us"] / 1e6
    detail = {k: v for k, v in d["errors"].items() if v}
    res = dict(
        requests=d["roundtrips"], duration_s=dur, rps=d["roundtrips"] / dur if dur else 0, bytes_in=d["bytes"],
        p50_ms=d["p50_us"] / 1000, p90_ms=d["p90_us"] / 1000, p99_ms=d["p99_us"] / 1000, max_ms=d["max_us"] / 1000,
        mean_ms=d["mean_us"] / 1000, errors=sum(detail.values()), error_detail=detail,
    )
    if d.get("first_error"):
        res["first_error"] = d["first_error"][:300]
    return res


def wsload_status(env):
    if env.wsload.exists():
        return dict(available=True)
    err = BUILD / "wsload.err"
    return dict(available=False, reason=err.read_text().strip() if err.exists() else "not built (bench/run.sh builds it)")


def parse_h2load(out, logpath):
    m = re.search(r"finished in ([\d.]+)(m?s)", out)
    rq = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                   r"(\d+) errored, (\d+) timeout", out)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    tr = re.search(r"traffic: .*?\((\d+)\) total", out)
    if not (m and rq):
        raise RuntimeError("h2load: " + out.strip()[-300:])
    dur = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    done, ok, failed, errored, tmo = (int(rq.group(i)) for i in (3, 4, 5, 6, 7))
    lat = []
    try:
        with open(logpath) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]))
    except OSError:
        pass
    lat.sort()

    def pct(q):
        return lat[min(len(lat) - 1, int(q / 100 * len(lat)))] / 1000 if lat else None

    bad_status = (int(st.group(3)) + int(st.group(4))) if st else 0
    errors = failed + tmo + (0 if failed else bad_status)
    detail = {k: v for k, v in (("failed", failed), ("errored", errored), ("timeout", tmo), ("4xx+5xx", bad_status)) if v}
    return dict(
        requests=done, duration_s=dur, rps=done / dur if dur else 0, bytes_in=int(tr.group(1)) if tr else 0,
        p50_ms=pct(50), p90_ms=pct(90), p99_ms=pct(99), max_ms=lat[-1] / 1000 if lat else None,
        mean_ms=(sum(lat) / len(lat) / 1000) if lat else None, errors=errors, error_detail=detail,
    )


def check(env, w, server):
    """One request with urllib before loading: status 200 and the expected body size (WebSocket: one
    echo round trip with bench/wsload)."""
    if w.get("tool") == "wsload":
        st = wsload_status(env)
        if not st["available"]:
            raise RuntimeError("bench/wsload is not built: " + st["reason"][:200])
        url = "ws://127.0.0.1:%d%s" % (server.http_port, w["path"])
        _, out = run_load([str(env.wsload), "-url", url, "-c", "1", "-rounds", "1", "-fail-fast", "-d", "15s",
                           "-timeout", "10s"], 15)
        m = re.search(r"^WSLOAD (\{.*\})$", out, re.M)
        d = json.loads(m.group(1)) if m else {}
        if d.get("roundtrips") != 1:
            raise RuntimeError("WebSocket check (one echo round trip) failed: %s" % (
                d.get("first_error") or out.strip()[-200:] or "no output"))
        return
    if w.get("tool") == "h2load":
        r = sh(["curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                "https://127.0.0.1:%d%s" % (server.https_port, w["path"])], timeout=30)
        if r.stdout.strip() != "2 200":
            raise RuntimeError("HTTP/2 check failed: %r %s" % (r.stdout, r.stderr.strip()[:200]))
        return
    url = "http://127.0.0.1:%d%s" % (server.http_port, w["path"])
    data = b"x" * w["upload"] if w.get("upload") else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data:
        req.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(req, timeout=60) as r:
        n = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
        if r.status != 200:
            raise RuntimeError("check: HTTP %d" % r.status)
    if w.get("bytes") and n != w["bytes"]:
        raise RuntimeError("check: got %d bytes, want %d" % (n, w["bytes"]))


QUIET = dict(budget=None)


def wait_quiet(env):
    """Wait (within a run-wide budget) until the machine is idle: other work running on it (tests,
    builds) would otherwise be measured too. Returns the CPU cores busy when the cell starts."""
    if QUIET["budget"] is None:
        QUIET["budget"] = float(env.args.quiet_budget)
    while True:
        b0, t0 = system_busy()[0], time.time()
        time.sleep(0.25)
        busy = (system_busy()[0] - b0) / (time.time() - t0)
        if busy < 0.2 or QUIET["budget"] <= 0:
            return busy
        QUIET["budget"] -= 0.25


def run_cell(env, w, server):
    a = env.args
    conns = a.connections if w["conns"] == "C" else a.big_connections
    check(env, w, server)
    busy_before = wait_quiet(env)
    if a.warmup > 0:
        run_load(load_cmd(env, w, server, a.warmup, conns), a.warmup)
    cmd = load_cmd(env, w, server, a.duration, conns)
    logpath = BUILD / "h2load.log"
    if logpath.exists():
        logpath.unlink()
    sampler = Sampler(server.roots, server.front)
    cpu0 = cpu_seconds(server.roots)
    ru0c, ru0s = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    busy0, t0 = system_busy(), time.time()
    sampler.start()
    try:
        rc, out = run_load(cmd, a.duration, logpath)
    finally:
        cpu1 = cpu_seconds(server.roots)
        busy1, t1 = system_busy(), time.time()
        mem = sampler.stop()
        ru1c, ru1s = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    if w.get("tool") == "wsload":
        res = parse_wsload(out)
        if not res["requests"]:
            raise RuntimeError("no WebSocket round trip completed: %s" % res.get("first_error", "?"))
    elif cmd[0] == "h2load":
        res = parse_h2load(out, logpath)
    else:
        res = parse_wrk(out)
    res.update(mem)
    res["connections"] = conns
    res["roots"] = len(server.roots)
    res["cpu_s"] = cpu1 - cpu0
    res["cpu_s_per_1k"] = (res["cpu_s"] / res["requests"] * 1000) if res["requests"] else None
    res["cpu_cores"] = res["cpu_s"] / res["duration_s"] if res["duration_s"] else None
    tool = (ru1c.ru_utime + ru1c.ru_stime) - (ru0c.ru_utime + ru0c.ru_stime)
    me = (ru1s.ru_utime + ru1s.ru_stime) - (ru0s.ru_utime + ru0s.ru_stime)
    res["load_tool_cpu_s"] = tool
    # CPU used on the machine by anything else than the server, the load tool and this driver.
    res["other_cpu_cores"] = max(0.0, (busy1[0] - busy0[0]) - res["cpu_s"] - tool - me) / (t1 - t0)
    res["softirq_cores"] = (busy1[1] - busy0[1]) / (t1 - t0)
    res["busy_before_cores"] = busy_before
    if w.get("upload"):
        res["mib_s"] = res["requests"] * w["upload"] / MIB / res["duration_s"]
    elif w.get("bytes"):
        res["mib_s"] = res["bytes_in"] / MIB / res["duration_s"]
    res["load_cmd"] = " ".join(shlex.quote(c) for c in cmd)
    if not server.alive():
        res["note"] = "server exited during the run"
    return res


# ---------------------------------------------------------------------------------------------
# Setup checks and metadata
# ---------------------------------------------------------------------------------------------


PIP_WSGI = ("gunicorn", "granian", "uwsgi", "flask", "werkzeug", "django", "matplotlib")
PIP_ASGI = ("uvicorn", "uvloop", "httptools", "websockets", "granian", "hypercorn", "h11", "wsproto", "fastapi",
            "starlette", "pydantic", "pydantic-core", "anyio")


def pip_versions(names=PIP_WSGI):
    r = sh([str(VENV / "bin" / "python"), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"])
    try:
        pkgs = {re.sub(r"[-_.]+", "-", p["name"].lower()): p["version"] for p in json.loads(r.stdout)}
    except ValueError:
        pkgs = {}
    return {k: pkgs.get(k, "not installed") for k in names}


def wsload_version():
    """Go version and WebSocket library of bench/.build/wsload (go version -m)."""
    r = sh(["go", "version", "-m", str(BUILD / "wsload")])
    if r.returncode:
        return "not built"
    go = r.stdout.split("\n", 1)[0].split(": ", 1)[-1].strip()
    lib = re.search(r"dep\s+(github.com/gorilla/websocket)\s+(\S+)", r.stdout)
    return "%s, %s" % (go, " ".join(lib.groups()) if lib else "?")


def machine_info():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1024 / 1024)
    except OSError:
        pass
    return dict(
        nproc=os.cpu_count(), cpu=cpu, memory=mem, kernel=platform.release(),
        os=first_line(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]),
        python=first_line([str(VENV / "bin" / "python"), "--version"]),
        go=first_line(["go", "version"]),
    )


def snake_status(env):
    if env.snake.exists():
        src = BUILD / "caddy-snake.src"
        py = []
        for label, venv in (("WSGI (caddy-snake)", VENV), ("ASGI (caddy-snake-asgi)", VENV312)):
            exe = venv / "bin" / "python"
            py.append("%s: %s (`%s`)" % (label, first_line([str(exe), "--version"]) if exe.exists() else "no venv",
                                         venv.relative_to(ROOT)))
        return dict(available=True, version=first_line([str(env.snake), "version"]),
                    source=src.read_text().split()[0] if src.exists() else "?", python="; ".join(py))
    err = BUILD / "caddy-snake.err"
    reason = err.read_text().strip() if err.exists() else "not built (bench/run.sh builds it)"
    reason = re.sub(r"https?://[^/\s]+", "<GOPROXY>", reason)
    return dict(available=False, reason=reason)


PROBE_LABEL = {"socketpair": "socketpair round trip (AF_UNIX stream, 16 bytes each way)",
               "futex": "futex wake round trip (counter in shared memory, FUTEX_WAIT/FUTEX_WAKE)",
               "spin": "shared-memory spin round trip (both sides busy-poll the counter)"}


def ipc_probe(env):
    """Runs bench/.build/ipcprobe (two processes ping-ponging over a socketpair, a futex and a spun-on
    shared counter) once the machine is idle; returns its report, with the other load meanwhile."""
    binary = BUILD / "ipcprobe"
    if not binary.exists():
        err = BUILD / "ipcprobe.err"
        return dict(available=False, reason=err.read_text().strip() if err.exists() else "not built (bench/run.sh builds it)")
    wait_quiet(env)
    ru0c, ru0s = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    busy0, t0 = system_busy()[0], time.time()
    try:
        r = sh([str(binary)], timeout=60)
    except subprocess.TimeoutExpired:
        return dict(available=False, reason="bench/.build/ipcprobe did not finish in 60 s")
    busy1, t1 = system_busy()[0], time.time()
    ru1c, ru1s = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    m = re.search(r"^IPCPROBE (\{.*\})$", r.stdout, re.M)
    if r.returncode or not m:
        return dict(available=False, reason=("exit %d: " % r.returncode) + (r.stdout + r.stderr).strip()[-300:])
    out = json.loads(m.group(1))
    own = sum(x.ru_utime + x.ru_stime for x in (ru1c, ru1s)) - sum(x.ru_utime + x.ru_stime for x in (ru0c, ru0s))
    out.update(available=True, command="bench/.build/ipcprobe", elapsed_s=t1 - t0,
               other_cpu_cores=max(0.0, busy1 - busy0 - own) / (t1 - t0))
    return out


def probe_table(probe):
    """Markdown lines: the IPC probe's figures (or why there are none)."""
    if not probe:
        return []
    if not probe.get("available"):
        return ["IPC probe: not measured (%s)." % probe.get("reason", "?").splitlines()[0][:200]]
    lines = ["IPC probe on this machine (`%s`: two processes, %d CPUs, %s; %d warm-up round trips, then the "
             "measured ones, %.0f s cap per mode; other load meanwhile %.2f CPU). What one wake-up between "
             "Caddy and a worker costs here, to read the tables of different machines side by side:" % (
                 probe["command"], probe["cpus"], probe["go"], probe["warmup"], probe["cap_s"], probe["other_cpu_cores"]),
             "", "| IPC probe | median µs | p99 µs | min µs | mean µs | round trips |", "|---|---:|---:|---:|---:|---:|"]
    for r in probe["results"]:
        label = PROBE_LABEL.get(r["mode"], r["mode"])
        if r.get("error"):
            lines.append("| %s | failed: %s | | | | |" % (label, r["error"][:80].replace("|", "/")))
            continue
        lines.append("| %s | %.2f | %.2f | %.2f | %.2f | %d%s |" % (
            label, r["median_us"], r["p99_us"], r["min_us"], r["mean_us"], r["round_trips"],
            " (time cap reached)" if r.get("capped") else ""))
    return lines


def uwsgi_status():
    if (VENV / "bin" / "uwsgi").exists():
        return dict(available=True)
    err = BUILD / "uwsgi.err"
    return dict(available=False, reason=err.read_text().strip() if err.exists() else "not installed")


def prepare_data(env):
    (BUILD / "data").mkdir(parents=True, exist_ok=True)
    env.logs.mkdir(parents=True, exist_ok=True)
    if not env.file.exists() or env.file.stat().st_size != 100 * MIB:
        block = bytes(range(256)) * 4096  # 1 MiB
        with open(env.file, "wb") as f:
            for _ in range(100):
                f.write(block)
    r = sh([env.python, str(APPS / "setup_db.py")], env=base_env(env))
    if r.returncode:
        raise SystemExit("setup_db.py failed:\n" + r.stdout + r.stderr)
    r = sh([env.python, "-c", "import sys; sys.path.insert(0, %r); import app; sys.stdout.write(app.json_body().decode())"
            % str(APPS)])
    env.json4k = r.stdout


def contender_commands(env, c):
    """The exact commands of a contender, with placeholders for the ports (for the docs)."""
    n, t = env.args.procs, env.args.threads
    out = []
    kind = c["kind"]
    if kind in ("proxy", "alone"):
        port = 8001 if kind == "proxy" else 8000
        out.append(" ".join(shlex.quote(x) for x in upstream_cmd(env, c["upstream"], "<app>", port))
                   .replace(str(BENCH), "bench").replace(str(ROOT), "."))
    if kind != "alone":
        cf = c.get("caddyfile") or CADDYFILE[kind]
        binary = "bench/.build/caddy-snake" if kind == "snake" else "bench/.build/caddy"
        threads = t if c.get("threads") == "T" else 1
        vars_ = "BENCH_WORKERS=%d BENCH_THREADS=%d " % (n, threads) if kind in ("wsgi", "snake") else ""
        if kind == "asgi":
            vars_ = "BENCH_WORKERS=%d " % n
        if kind == "proxy":
            vars_ = "BENCH_UPSTREAM=127.0.0.1:8001 "
        out.append("%sBENCH_APP=<app> %s run --adapter caddyfile --config bench/caddy/%s.Caddyfile" % (vars_, binary, cf))
    return out


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------

METRICS = [  # key, header, better, format
    ("rps", "req/s", "high", "{:,.0f}"),
    ("mib_s", "MiB/s", "high", "{:,.0f}"),
    ("p50_ms", "p50 ms", "low", "{:.2f}"),
    ("p99_ms", "p99 ms", "low", "{:.2f}"),
    ("max_ms", "max ms", "low", "{:.1f}"),
    ("errors", "errors", None, "{:,d}"),
    ("cpu_s_per_1k", "CPU s/1k req", "low", "{:.3f}"),
    ("rss_front_mib", "RSS front MiB", "low", "{:.0f}"),
    ("rss_worker_max_mib", "RSS worker MiB", "low", "{:.0f}"),
]


NOISY_CORES = 0.15
RETRY_CORES = 0.25
HEADLINE = ("hello", "django", "flask", "hello-h2", "hello-close", "json4k", "asgi-hello", "fastapi-json", "ws-echo")


def is_peer(name):
    return CONTENDER.get(name, {}).get("kind") != "respond"


def best_of(cells, key, better):
    vals = [c[key] for c in cells if c.get("status") == "ok" and is_peer(c["contender"]) and c.get(key) is not None]
    if not vals or better is None:
        return None
    return max(vals) if better == "high" else min(vals)


def fmt_cell(cell, key, better, fmtstr, best):
    v = cell.get(key)
    if v is None:
        return "—"
    s = fmtstr.format(v)
    if best:
        s += " (%.2f)" % (v / best)
    elif best == 0 and better:
        s += " (—)"
    return s


def workload_table(results, wname):
    w = WORKLOAD[wname]
    cells = [c for c in results["cells"] if c["workload"] == wname]
    metrics = [m for m in METRICS if m[0] != "mib_s" or (w.get("bytes") or w.get("upload"))]
    best = {k: best_of(cells, k, b) for k, _, b, _ in metrics}
    rate = rate_name(w)
    lines = ["| contender | " + " | ".join(rate if k == "rps" else h for k, h, _, _ in metrics) + " | procs |",
             "|---|" + "---:|" * (len(metrics) + 1)]
    for c in cells:
        name = c["contender"] if is_peer(c["contender"]) else "_%s_" % c["contender"]
        if c["status"] != "ok":
            why = c["status"] if c["status"] != "failed" else "failed: " + c.get("error", "")[:80].replace("|", "/")
            lines.append("| %s | %s |%s" % (name, why, " |" * len(metrics)))
            continue
        row = [fmt_cell(c, k, b, f, best[k]) for k, _, b, f in metrics]
        procs = "%d+%d" % (c.get("roots", 1), c.get("workers", 0))
        lines.append("| %s | %s | %s |" % (name, " | ".join(row), procs))
    return "\n".join(lines)


def rate_name(w):
    return "round trips/s" if w.get("tool") == "wsload" else "req/s"


def summary_line(results):
    cells = {(c["contender"], c["workload"]): c for c in results["cells"] if c["status"] == "ok"}
    me = cells.get(("caddy-wsgi", "hello"))
    if not me:
        return "Targets: no caddy-wsgi hello result."
    parts = ["Targets (hello world, keep-alive, c=%d): caddy-wsgi %s req/s" % (me["connections"], "{:,.0f}".format(me["rps"]))]
    peers = sorted(c["rps"] for (n, w), c in cells.items() if w == "hello" and is_peer(n))
    median = peers[len(peers) // 2] if peers else 0
    for other, label in (("caddy+gunicorn-gthread", "Caddy→Gunicorn gthread"), ("caddy+gunicorn-sync", "Caddy→Gunicorn sync"),
                         ("granian", "Granian alone"), ("caddy-snake", "caddy-snake"), ("caddy-respond", "Caddy respond")):
        o = cells.get((other, "hello"))
        text = "%s %s" % ("%.2f×" % (me["rps"] / o["rps"]) if o and o["rps"] else "n/a", "vs " + label)
        if o and o["rps"] < 0.1 * median:
            text += " (%s req/s: it stalled in this run, the ratio means nothing)" % "{:,.0f}".format(o["rps"])
        parts.append(text)
    thr, gth = cells.get(("caddy-wsgi-threads", "hello")), cells.get(("caddy+gunicorn-gthread", "hello"))
    if thr and gth:
        parts.append("caddy-wsgi threads=%d %.2f× vs gthread threads=%d" % (results["meta"]["args"]["threads"],
                                                                          thr["rps"] / gth["rps"], results["meta"]["args"]["threads"]))
    h2, gh2 = cells.get(("caddy-wsgi", "hello-h2")), cells.get(("granian-h2", "hello-h2"))
    if h2 and gh2 and gh2["rps"]:
        parts.append("hello-h2: caddy-wsgi %s req/s, %.2f× vs Granian's own TLS + HTTP/2" % ("{:,.0f}".format(h2["rps"]),
                                                                                           h2["rps"] / gh2["rps"]))
    p99 = []
    for c in CONTENDERS:
        o = cells.get((c["name"], "hello"))
        if o and c["name"] != "caddy-wsgi" and o.get("p99_ms"):
            p99.append("%s %.2f ms (%.2f×)" % (c["name"], o["p99_ms"], me["p99_ms"] / o["p99_ms"]))
    line = "; ".join(parts)
    line += ". p99 caddy-wsgi %.2f ms vs: %s." % (me["p99_ms"], ", ".join(p99)) if p99 else "."
    return line


# caddy-asgi against each ASGI peer: (contender, label, target ratio on asgi-hello or None)
ASGI_PEERS = (("granian-asgi", "Granian ASGI alone", 1.0), ("caddy+uvicorn", "Caddy→Uvicorn", 2.0),
              ("uvicorn", "Uvicorn alone", None), ("hypercorn", "Hypercorn alone", None),
              ("caddy-snake-asgi", "caddy-snake ASGI", None))
ASGI_WORKLOADS = [w["name"] for w in WORKLOADS if w.get("iface") == "asgi"]


def asgi_ratios(results):
    """{workload: {caddy_asgi: rate or None, status, error, connections, vs: {peer: {ratio, p99_ratio, rate, status}}}}
    for the ASGI workloads of the run: caddy-asgi's rate ÷ the peer's (above 1: caddy-asgi is faster) and p99
    ÷ the peer's p99 (below 1: caddy-asgi's tail is shorter)."""
    cells = {(c["contender"], c["workload"]): c for c in results["cells"]}
    out = {}
    for wname in ASGI_WORKLOADS:
        if not any(c["workload"] == wname for c in results["cells"]):
            continue
        me = cells.get(("caddy-asgi", wname))
        ok = me is not None and me.get("status") == "ok"
        entry = dict(caddy_asgi=me["rps"] if ok else None, p99_ms=me.get("p99_ms") if ok else None,
                     status=me["status"] if me else "not run", connections=me.get("connections") if ok else None, vs={})
        if me and not ok:
            entry["error"] = me.get("error", "")
        for peer, label, target in ASGI_PEERS:
            o = cells.get((peer, wname))
            if not o:
                continue
            v = dict(label=label, status=o["status"], rate=o.get("rps"), p99_ms=o.get("p99_ms"), ratio=None, p99_ratio=None)
            if ok and o["status"] == "ok" and o.get("rps"):
                v["ratio"] = me["rps"] / o["rps"]
                if me.get("p99_ms") and o.get("p99_ms"):
                    v["p99_ratio"] = me["p99_ms"] / o["p99_ms"]
            if target and wname == "asgi-hello":
                v["target"] = target
                v["target_met"] = (v["ratio"] >= target) if v["ratio"] is not None else None
            entry["vs"][peer] = v
        out[wname] = entry
    return out


def summary_asgi(results):
    """One line like the WSGI summary: caddy-asgi's rate per ASGI workload and its ratio to each peer."""
    ratios = asgi_ratios(results)
    if not ratios:
        return ""
    parts = []
    for wname, e in ratios.items():
        unit = rate_name(WORKLOAD[wname])
        if e["caddy_asgi"] is None:
            parts.append("%s: caddy-asgi %s" % (wname, "failed (%s)" % e.get("error", "?")[:160]
                                                if e["status"] == "failed" else e["status"]))
            continue
        peers = sorted(v["rate"] for v in e["vs"].values() if v.get("rate"))
        median = peers[len(peers) // 2] if peers else 0
        txt = []
        for peer, v in e["vs"].items():
            if v["ratio"] is None:
                txt.append("n/a vs %s (%s)" % (v["label"], v["status"][:60]))
                continue
            t = "%.2f× vs %s" % (v["ratio"], v["label"])
            if "target" in v:
                t += " (target ≥ %.1f×: %s)" % (v["target"], "met" if v["target_met"] else "NOT met")
            if v["rate"] < 0.1 * median:
                t += " (%s %s: it stalled in this run, the ratio means nothing)" % ("{:,.0f}".format(v["rate"]), unit)
            txt.append(t)
        p99 = ", ".join("%s %.2f ms (%.2f×)" % (peer, v["p99_ms"], v["p99_ratio"])
                        for peer, v in e["vs"].items() if v.get("p99_ratio"))
        parts.append("%s (c=%d): caddy-asgi %s %s; %s%s" % (
            wname, e["connections"], "{:,.0f}".format(e["caddy_asgi"]), unit, "; ".join(txt) or "no peer measured",
            (". p99 caddy-asgi %.2f ms vs: %s" % (e["p99_ms"], p99)) if p99 else ""))
    return "ASGI targets: " + ". ".join(parts) + "."


def asgi_ratio_table(results):
    """Markdown table: caddy-asgi's rate ÷ each peer's, per ASGI workload (p99 ratio in parentheses)."""
    ratios = asgi_ratios(results)
    if not ratios:
        return ""
    lines = ["| caddy-asgi vs | " + " | ".join(label for _, label, _ in ASGI_PEERS) + " |",
             "|---|" + "---:|" * len(ASGI_PEERS)]
    for wname, e in ratios.items():
        row = []
        for peer, _, _ in ASGI_PEERS:
            v = e["vs"].get(peer)
            if e["caddy_asgi"] is None:
                row.append("caddy-asgi %s" % ("failed" if e["status"] == "failed" else e["status"][:40]))
            elif not v:
                row.append("—")
            elif v["ratio"] is None:
                row.append("%s" % ("failed" if v["status"] == "failed" else v["status"][:40]))
            else:
                cell = "%.2f×" % v["ratio"]
                if v.get("p99_ratio"):
                    cell += " (p99 %.2f×)" % v["p99_ratio"]
                if "target" in v:
                    cell += " %s ≥ %.1f×" % ("✓" if v["target_met"] else "✗", v["target"])
                row.append(cell)
        lines.append("| %s (%s) | %s |" % (wname, rate_name(WORKLOAD[wname]), " | ".join(row)))
    return "\n".join(lines)


def has_iface(results, iface):
    return any(iface_of(c["workload"]) == iface for c in results["cells"])


def render_markdown(results, iface=None):
    """The run's Markdown: every table (iface None), or those of one interface (the docs' sections)."""
    m = results["meta"]
    out = ["# caddy-wsgi benchmark run %s" % m["timestamp"], ""]
    out.append("%d Python processes per contender, %d s per cell after a %d s warm-up, c=%d (low-concurrency rows: c=%d); "
               "total run time %.0f s." % (m["args"]["procs"], m["args"]["duration"], m["args"]["warmup"],
                                           m["args"]["connections"], m["args"]["big_connections"], m["elapsed_s"]))
    out.append("")
    if iface in (None, "wsgi") and has_iface(results, "wsgi") and results.get("summary"):
        out += ["**" + results["summary"] + "**", ""]
    if iface in (None, "asgi") and has_iface(results, "asgi"):
        line = results.get("summary_asgi") or summary_asgi(results)
        if line:
            out += ["**" + line + "**", ""]
        table = asgi_ratio_table(results)
        if table:
            out += ["caddy-asgi's rate ÷ each ASGI peer's in the same workload (above 1: caddy-asgi serves more); "
                    "in parentheses its p99 latency ÷ the peer's (below 1: a shorter tail). Targets: ≥ 1.0× Granian "
                    "ASGI alone and ≥ 2× Caddy → Uvicorn on asgi-hello.", "", table, ""]
    out.append("Each figure is absolute, with its ratio to the best peer of the same workload in parentheses "
               "(value ÷ best: below 1 is fewer req/s, above 1 is more latency, CPU or memory than the best). "
               "_Italic_ rows are references without Python, not peers: they are not used as the best. "
               "procs = started processes (Caddy and/or the server's master) + their children (the Python workers).")
    for w in WORKLOADS:
        if iface and w.get("iface", "wsgi") != iface:
            continue
        if not any(c["workload"] == w["name"] for c in results["cells"]):
            continue
        out += ["", "### %s" % w["name"], "", w["desc"] + ".", "", workload_table(results, w["name"])]
        if w["name"] == "hello" and m.get("ipc_probe"):
            out += [""] + probe_table(m["ipc_probe"])
    mine = [c for c in results["cells"] if not iface or iface_of(c["workload"]) == iface]
    noisy = [c for c in mine if c.get("other_cpu_cores", 0) > NOISY_CORES]
    if noisy:
        out += ["", "Cells during which other processes on the machine used more than %.2f CPU (their figures are "
                "less reliable): %s." % (NOISY_CORES, ", ".join("%s/%s %.2f" % (c["contender"], c["workload"],
                                                                                c["other_cpu_cores"]) for c in noisy))]
    notes = [c for c in mine if c.get("note") or c.get("error_detail")]
    if notes:
        out += ["", "Error details:", ""]
        for c in notes:
            out.append("- %s / %s: %s%s%s" % (c["contender"], c["workload"],
                                               ", ".join("%s=%s" % kv for kv in c.get("error_detail", {}).items()),
                                               (" " + c["note"]) if c.get("note") else "",
                                               (" (first: %s)" % c["first_error"]) if c.get("first_error") else ""))
    failed = [c for c in mine if c.get("status") == "failed"]
    if failed:
        out += ["", "Failed cells:", ""]
        for c in failed:
            out.append("- %s / %s: %s" % (c["contender"], c["workload"], c.get("error", "?")))
    return "\n".join(out) + "\n"


def render_chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wl = [w for w in WORKLOADS if any(c["workload"] == w["name"] and c["status"] == "ok" for c in results["cells"])]
    if not wl:
        return
    names = [c["name"] for c in CONTENDERS if any(x["contender"] == c["name"] for x in results["cells"])]
    colors = {n: plt.cm.tab20(i % 20) for i, n in enumerate(names)}
    cols = 3
    rows = (len(wl) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), squeeze=False)
    for ax, w in zip(axes.flat, wl):
        cells = {c["contender"]: c for c in results["cells"] if c["workload"] == w["name"] and c["status"] == "ok"}
        ys = [n for n in names if n in cells]
        vals = [cells[n]["rps"] for n in ys]
        bars = ax.barh(range(len(ys)), vals, color=[colors[n] for n in ys],
                       edgecolor=["black" if n.startswith(("caddy-wsgi", "caddy-asgi")) else "none" for n in ys])
        for bar, n in zip(bars, ys):
            if not is_peer(n):
                bar.set_hatch("//")
                bar.set_alpha(0.6)
        ax.set_yticks(range(len(ys)))
        ax.set_yticklabels(ys, fontsize=8)
        ax.invert_yaxis()
        ax.set_title("%s (c=%d)" % (w["name"], next(iter(cells.values()))["connections"]), fontsize=10)
        ax.set_xlabel(rate_name(w).replace("req/s", "requests/s"), fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        top = max(vals) if vals else 1
        for i, v in enumerate(vals):
            ax.text(v + top * 0.01, i, "{:,.0f}".format(v) if v >= 10 else "%.1f" % v, va="center", fontsize=7)
        ax.set_xlim(0, top * 1.18)
    for ax in list(axes.flat)[len(wl):]:
        ax.axis("off")
    m = results["meta"]
    fig.suptitle("caddy-wsgi benchmark %s: requests/s per workload (%d Python processes, %s; hatched: no Python)" %
                 (m["timestamp"], m["args"]["procs"], m["machine"]["cpu"] + ", %d CPUs" % m["machine"]["nproc"]), fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)


ASGI_ONLY = "--only %s --workloads %s" % (",".join(c["name"] for c in CONTENDERS if c.get("iface") == "asgi"),
                                          ",".join(ASGI_WORKLOADS))


def write_docs(results, results_dir=None):
    m = results["meta"]
    mach = m["machine"]
    out = ["# Benchmarks", ""]
    out.append("The suite in [`bench/`](../bench) measures caddy-wsgi against the usual ways of serving a WSGI app, "
               "and its `asgi` directive against those of serving an ASGI app ([ASGI](#asgi) below), "
               "all on the same machine in one run. This page is generated from the last run by "
               "`bench/run.sh --write-docs`; the run itself was `%s`." % m["command"])
    if m.get("asgi_run"):
        # The ASGI rows came from a later run of the ASGI part, merged into these results.
        out[-1] += (" The ASGI section comes from a separate run on the same machine, `%s` (%s, commit %s)."
                    % (m["asgi_run"]["command"], m["asgi_run"]["timestamp"], m["asgi_run"]["git"]))
    out += ["", "## Run it", "", "```sh", "bench/run.sh                  # the full suite with the defaults below (about 16 min on 2 CPUs)",
            "bench/run.sh --quick          # smoke run: 1 s cells, %d workloads" % sum(1 for w in WORKLOADS if w.get("quick")),
            "bench/run.sh --only caddy-wsgi,gunicorn-sync --workloads hello,django",
            "bench/run.sh %s   # the ASGI part alone (about 3 min)" % ASGI_ONLY,
            "bench/run.sh --procs 2 --threads 2 --duration 5 --connections 64 --big-connections 4 --warmup 1",
            "bench/run.sh --write-docs     # regenerate this page from bench/results/latest.json",
            "bench/run.sh --list           # contenders and workloads",
            "# also: --no-build (keep bench/.build/caddy), --retry-snake (build caddy-snake again),",
            "#       --retry-budget S (re-run disturbed cells, default 120), --quiet-budget S (default 60)",
            "```", "",
            "It installs what is missing: a venv at `bench/.venv` with the pins of `bench/requirements.txt` "
            "(uWSGI is built by pip; if that fails the run goes on without it), `wrk` and `h2load` "
            "(`apt-get install wrk nghttp2-client`), the WebSocket load generator `bench/.build/wsload` (`go build` "
            "of [`bench/wsload/`](../bench/wsload), its own Go module), the IPC probe `bench/.build/ipcprobe` (`go build` of "
            "[`bench/ipcprobe/`](../bench/ipcprobe), standard library only), caddy-snake (`xcaddy build v2.11.9 --with "
            "github.com/mliezun/caddy-snake@v0.0.0=<dir>` of its source tarball, `$CADDY_SNAKE_SRC` or "
            "`../shared/peers/caddy-snake-*.tar.gz`, extracted into `bench/.build`; the Go module proxy does not serve "
            "it), a self-signed certificate for granian-h2 (`openssl req -x509`, P-256, in `bench/.build/tls`), and caddy with this module (`scripts/build-caddy.sh "
            "bench/.build/caddy`, rebuilt on every run so that it measures the current tree; `CADDY_BIN` "
            "overrides it, `--no-build` skips the build). Results go to `bench/results/<timestamp>.{md,json}` and "
            "`bench/results/latest.{md,json,png}`. Only 127.0.0.1 is used; every server runs in its own "
            "process group and is stopped (TERM, then KILL of the group and of any pid left in its tree) "
            "after its cells, and on exit or Ctrl-C."]
    out += ["", "## Machine and versions", "",
            "| | |", "|---|---|",
            "| CPUs (nproc) | %s |" % mach["nproc"], "| CPU | %s |" % mach["cpu"], "| memory | %s |" % mach["memory"],
            "| kernel | %s |" % mach["kernel"], "| OS | %s |" % mach["os"], "| Python | %s |" % mach["python"],
            "| Go | %s |" % mach["go"], "| caddy (with caddy-wsgi) | %s |" % m["versions"]["caddy"],
            "| caddy-wsgi commit | %s |" % m.get("git", "?")]
    for k, v in m["versions"]["pip"].items():
        out.append("| %s | %s |" % (k, v))
    out += ["| wrk | %s |" % m["versions"]["wrk"], "| h2load | %s |" % m["versions"]["h2load"]]
    sn = m["caddy_snake"]
    out += ["", "**caddy-snake**: " + (snake_line(sn) if sn["available"] else
                                       "not measured. `xcaddy build v2.11.9 --with github.com/mliezun/caddy-snake` failed:"),
            ""]
    if not sn["available"]:
        out += ["```", sn["reason"], "```", ""]
    uw = m["uwsgi"]
    if not uw["available"]:
        out += ["**uWSGI**: not measured, it did not install:", "", "```", uw["reason"], "```", ""]
    a = m["args"]
    out += ["## Method", "",
            "- Every contender runs with **%d Python processes** (`--procs`); the threaded cells use **%d threads** "
            "(`--threads`) per process: caddy-wsgi `threads %d` and Gunicorn gthread `--threads %d`. Granian keeps its "
            "own default thread settings (for WSGI its blocking-thread pool is sized from the backpressure, hundreds of "
            "threads), uWSGI and Gunicorn sync have one thread per process." % (a["procs"], a["threads"], a["threads"], a["threads"]),
            "- Load: `wrk -t1` (HTTP/1.1) or `h2load -t1 -m1` (HTTP/2 over TLS, Caddy's `tls internal` certificate), "
            "%d s per cell after a %d s warm-up, **c=%d** connections (c=%d for the 100 MiB and 10 MiB rows). "
            "The load generator runs on the same %s-CPU machine as the server and takes up to one CPU: "
            "absolute numbers are lower than on a dedicated client; the ratios are what to read."
            % (a["duration"], a["warmup"], a["connections"], a["big_connections"], mach["nproc"]),
            "- **errors** = non-2xx/3xx responses + socket errors (connect, read, write, timeout) as wrk or h2load count them.",
            "- **CPU s/1k req** = CPU seconds (utime+stime, children included) of the server's whole process tree "
            "(Caddy, the Python master and workers) during the measured run, per 1,000 requests; sampled from "
            "`/proc/<pid>/stat` before and after.",
            "- Not in the CPU figure: the kernel's loopback TCP work done in softirq context (charged to no "
            "process; the JSON has it as `softirq_cores`), and the load generator (`load_tool_cpu_s`).",
            "- Other load: the machine is shared (tests and builds may run beside the suite). Before each cell the "
            "driver waits (60 s budget per run) for the machine to be idle; it measures the CPU used by anything "
            "other than the server, the load tool and itself during each cell (`other_cpu_cores` in the JSON). "
            "Cells with more than %.2f CPU of such load are run once more at the end (a %d s budget) and the "
            "quieter attempt is kept; cells still above %.2f are listed under the tables." % (
                RETRY_CORES, a.get("retry_budget", 120), NOISY_CORES),
            "- **RSS** = peak VmRSS, sampled every 100 ms during the run: *front* is the process that accepts "
            "the connections (Caddy, or the Gunicorn/Granian/uWSGI master), *worker* the largest Python worker.",
            "- Ratios: value ÷ the best peer's value in the same workload (best = highest req/s, lowest "
            "latency/CPU/RSS). Caddy `respond`/`file_server` is the ceiling of any Caddy handler, shown "
            "in italics and not counted as a peer.",
            "- **hello-h2**: HTTP/2 over TLS, one stream per connection (`h2load -m1`). The Caddy-fronted contenders "
            "use Caddy's `tls internal` certificate (ECDSA P-256); **granian-h2** is Granian doing its own TLS and "
            "HTTP/2 (`--http 2 --ssl-certificate --ssl-keyfile`, a self-signed P-256 certificate made with `openssl`), "
            "which is what a user choosing Granian instead of Caddy for HTTPS would run.",
            "- **IPC probe** (printed with the hello cell, its table is under the hello table): "
            "[`bench/ipcprobe`](../bench/ipcprobe) times round trips between two processes: a 16-byte message over "
            "an AF_UNIX socketpair and back; a counter in a shared page bumped then `FUTEX_WAKE`d, the other side "
            "`FUTEX_WAIT`ing and answering the same way; and the same counters busy-polled by both sides (no syscall; "
            "with 2 CPUs the spinner competes with the side it waits for, so its tail shows the scheduler). "
            "These are the costs a Caddy ⇄ worker bridge pays per wake-up on the machine, to read figures from "
            "different machines side by side.",
            "- **caddy-snake** runs with the Python of its `venv` (the line above names it); it talks to its "
            "workers over a Unix socket, like caddy-wsgi over socketpairs.",
            "- `n/a`: the workload does not apply (HTTP/2 is only measured for Caddy-fronted contenders and granian-h2; "
            "Caddy without Python has no Flask, Django, streaming, upload or sleep).", ""]
    out += ["## Contenders and their exact commands", "",
            "`<app>` is `app:application` (stdlib routes), `flask_app:application` or `django_app:application`, "
            "all in [`bench/apps/`](../bench/apps); every Caddyfile in [`bench/caddy/`](../bench/caddy) imports "
            "`common.caddy` and takes its ports and options from `BENCH_*` environment variables.", ""]
    out += docs_contenders(m, "wsgi")
    out += ["", "The Caddyfiles (`{$VAR}` is an environment variable, set by the driver):", ""]
    for name in ("common.caddy", "wsgi.Caddyfile", "proxy.Caddyfile", "respond.Caddyfile", "snake.Caddyfile"):
        path = CADDYFILES / name
        if path.exists():
            out += ["<details><summary>bench/caddy/%s</summary>" % name, "", "```caddy", path.read_text().rstrip(), "```",
                    "", "</details>", ""]
    out += ["", "## Workloads", "",
            "Each line gives the load command of the run (ports replaced by `<port>`); the wrk Lua script only "
            "adds a `done` hook that prints the counts and percentiles as JSON, and for the upload sets "
            "`wrk.method = \"POST\"` and a 10 MiB `wrk.body`.", ""]
    example = {}
    for cell in results["cells"]:
        if cell.get("load_cmd") and cell["workload"] not in example:
            cmd = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", cell["load_cmd"])
            example[cell["workload"]] = cmd.replace(str(BENCH), "bench")
    for w in WORKLOADS:
        if w.get("iface", "wsgi") != "wsgi":
            continue
        out.append("- **%s** (`%s`): %s." % (w["name"], w["path"], w["desc"]))
        if w["name"] in example:
            out.append("  `%s`" % example[w["name"]])
    notes = BENCH / "notes.md"
    if notes.exists():
        out += ["", "## Observations", "", notes.read_text().strip()]
    out += ["", "## Results", "", "![requests/s per workload and contender](benchmarks.png)", ""]
    if has_iface(results, "wsgi"):
        md = render_markdown(results, "wsgi")
        out.append(md.split("\n", 2)[2])
    else:
        out.append("The WSGI workloads were not part of this run.")
    out += docs_asgi_section(results, example)
    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.md").write_text("\n".join(out).rstrip() + "\n")
    png = Path(results_dir or RESULTS) / ("%s.png" % m["timestamp"])
    if png.exists():
        shutil.copyfile(png, DOCS / "benchmarks.png")
    log("wrote %s and %s" % (DOCS / "benchmarks.md", DOCS / "benchmarks.png"))


def snake_line(sn):
    """The docs' line on caddy-snake: what was built, from what, and which Python its workers ran."""
    txt = "built (%s)" % sn.get("version", "?")
    if sn.get("source"):
        txt += " from `%s` with `xcaddy build v2.11.9 --with github.com/mliezun/caddy-snake@v0.0.0=<extracted dir>`" % sn["source"]
    if sn.get("python"):
        txt += ". Its Python workers ran %s. The WSGI ones run on the same Python as every other contender; the " \
               "ASGI ones need 3.12+ (its worker script calls `asyncio.run(..., loop_factory=...)`, which 3.11 " \
               "lacks), so they have a venv of their own with the same pins" % sn["python"]
    return txt + "."


def docs_contenders(m, iface):
    """The contenders of the run that serve iface (the Caddy reference with WSGI), with their commands."""
    a, out = m["args"], []
    for name, info in m["contenders"].items():
        ci = CONTENDER.get(name, {}).get("iface", "wsgi")
        if ci != iface and not (ci is None and iface == "wsgi"):
            continue
        desc = re.sub(r"\bT\b", str(a["threads"]), re.sub(r"\bN\b", str(a["procs"]), info["desc"]))
        out.append("- **%s**: %s" % (name, desc))
        for cmd in info["commands"]:
            out.append("  - `%s`" % cmd)
        if info.get("venv") and info["venv"] != "bench/.venv":
            out.append("  - its Python workers: %s (`%s`)" % (info.get("python", "?"), info["venv"]))
        if info.get("status"):
            out.append("  - %s" % info["status"])
    return out


def docs_asgi_section(results, example):
    """The ASGI section of docs/benchmarks.md: caddy-asgi against Uvicorn (alone and behind Caddy),
    Granian ASGI and Hypercorn, with the ratios of the issue's targets."""
    m = results["meta"]
    a, mach = m["args"], m["machine"]
    out = ["## ASGI", "",
           "caddy-asgi (the `asgi` directive: the same managed pool, each worker running one asyncio event loop) "
           "against the usual ways of serving an ASGI app: Uvicorn alone and behind Caddy `reverse_proxy`, Granian "
           "(`--interface asgi`) and Hypercorn. The targets: on `asgi-hello`, **≥ 1.0× Granian ASGI alone** and "
           "**≥ 2× Caddy → Uvicorn**. The WSGI contenders do not run these workloads, nor the ASGI ones the WSGI "
           "workloads; Caddy `respond` is again the reference on hello world.", ""]
    if not has_iface(results, "asgi"):
        return out + ["Not measured in the run this page comes from (the full suite runs it; `bench/run.sh %s` "
                      "runs the ASGI part alone)." % ASGI_ONLY, ""]
    v = m["versions"]
    out += ["### ASGI method", "",
            "- Same as above: %d Python processes per contender, %d s per cell after a %d s warm-up, c=%d, wrk for "
            "the HTTP rows, every server on 127.0.0.1." % (a["procs"], a["duration"], a["warmup"], a["connections"]),
            "- Event loops: every server runs uvloop. Uvicorn with `--loop uvloop --http httptools --ws "
            "websockets-sansio` (what `uvicorn[standard]` picks on its own), Granian `--loop uvloop`, Hypercorn "
            "`-k uvloop`; caddy-asgi uses uvloop when the app's venv has it, as `bench/.venv` does.",
            "- Concurrency per worker: caddy-asgi runs as many requests and WebSockets at once per worker as the "
            "directive's default allows (the suite does not set it); Uvicorn and Hypercorn have no limit by default; "
            "Granian's backpressure is its default (backlog ÷ workers).",
            "- **ws-echo**: [`bench/wsload`](../bench/wsload) (Go, gorilla/websocket) opens c=%d WebSocket "
            "connections to `/ws` of the raw ASGI app; each sends a 13-byte text message and reads its echo, back to "
            "back, for the cell's duration, then closes with a close frame. **round trips/s** = echoes received "
            "and checked ÷ the time from the start to the last echo; latency = from the write of the message to "
            "the end of the read of its echo (percentiles from a log-linear histogram, under 1.6 %% error); "
            "**errors** = failed connects, read/write errors, timeouts (10 s), wrong echoes and closes by the "
            "server. Before the load, one echo round trip on one connection must succeed, or the cell is "
            "recorded as failed with the reason." % a["connections"],
            "- Ratios in the summary and its table: caddy-asgi's value ÷ the named peer's (above 1 on rates: "
            "caddy-asgi is faster); in the per-workload tables, as above, each value ÷ the best peer's.", ""]
    out += ["| ASGI package | version |", "|---|---|"]
    for k, ver in (v.get("pip_asgi") or {}).items():
        out.append("| %s | %s |" % (k, ver))
    out += ["| bench/wsload | %s |" % v.get("wsload", "?"), ""]
    wsl = m.get("wsload") or {}
    if wsl and not wsl.get("available", True):
        out += ["**bench/wsload** did not build, so the ws-echo cells failed:", "", "```", wsl.get("reason", ""), "```", ""]
    out += ["### ASGI contenders and their exact commands", "",
            "`<app>` is `asgi_app:app` (a raw ASGI 3 app: `/hello` and the `/ws` echo) or `fastapi_app:app`, "
            "both in [`bench/apps/`](../bench/apps). `proxy.Caddyfile` is the one above.", ""]
    out += docs_contenders(m, "asgi")
    out.append("")
    for name in ("asgi.Caddyfile", "snake-asgi.Caddyfile"):
        path = CADDYFILES / name
        if path.exists():
            out += ["<details><summary>bench/caddy/%s</summary>" % name, "", "```caddy", path.read_text().rstrip(),
                    "```", "", "</details>", ""]
    out += ["### ASGI workloads", ""]
    for w in WORKLOADS:
        if w.get("iface") != "asgi":
            continue
        out.append("- **%s** (`%s`): %s." % (w["name"], w["path"], w["desc"]))
        if w["name"] in example:
            out.append("  `%s`" % example[w["name"]])
    out += ["", "### ASGI results", ""]
    md = render_markdown(results, "asgi")
    out.append(md.split("\n", 2)[2])
    return out


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def run_group(env, c, group, todo, info):
    """Starts contender c with the app of group, runs the workloads todo, stops it. Returns the cells."""
    cells = []
    server = Server(env, c, group)
    try:
        server.start()
    except Exception as e:  # noqa: BLE001
        msg = "start failed: %s" % e
        log("!! %s [%s] %s\n%s" % (c["name"], group, msg, server.log_tail()))
        server.stop()
        return [dict(contender=c["name"], workload=w["name"], status="failed", error=msg) for w in todo]
    try:
        for w in todo:
            t0 = time.time()
            try:
                res = run_cell(env, w, server)
                res.update(contender=c["name"], workload=w["name"], status="ok")
                log("%-24s %-12s %10s %s  p50 %7.2f  p99 %8.2f  max %8.1f ms  err %d  cpu %.3f s/1k  "
                    "rss %.0f/%s MiB  workers %d%s  other %.2f cores  (%.0fs)" % (
                        c["name"], w["name"], "{:,.0f}".format(res["rps"]), "rt/s " if w.get("tool") == "wsload" else "req/s",
                        res["p50_ms"] or 0,
                        res["p99_ms"] or 0, res["max_ms"] or 0, res["errors"], res["cpu_s_per_1k"] or 0,
                        res["rss_front_mib"], "%.0f" % res["rss_worker_max_mib"] if res["rss_worker_max_mib"] else "-",
                        res["workers"], ("  %.0f MiB/s" % res["mib_s"]) if res.get("mib_s") else "",
                        res["other_cpu_cores"], time.time() - t0))
            except Exception as e:  # noqa: BLE001
                res = dict(contender=c["name"], workload=w["name"], status="failed", error=str(e)[:300])
                log("!! %s %s failed: %s\n%s" % (c["name"], w["name"], e, server.log_tail(4)))
            cells.append(res)
            if not server.alive():
                log("!! %s exited; restarting it" % c["name"])
                server.stop()
                server = Server(env, c, group)
                server.start()
    finally:
        if getattr(server, "caddy_vars", None):
            info.setdefault("caddy_vars", server.caddy_vars)
        server.stop()
    return cells


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", type=int, default=2, help="Python processes per contender (default 2)")
    p.add_argument("--threads", type=int, default=2, help="threads per process in the threaded cells (default 2)")
    p.add_argument("--duration", type=int, default=5, help="seconds per cell (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each cell (default 1)")
    p.add_argument("--connections", type=int, default=64, help="concurrency (default 64)")
    p.add_argument("--big-connections", type=int, default=4, help="concurrency of the 100 MiB / 10 MiB rows (default 4)")
    p.add_argument("--retry-budget", type=float, default=120,
                   help="seconds for re-running cells disturbed by other load on the machine (default 120; 0: off)")
    p.add_argument("--quiet-budget", type=float, default=60,
                   help="seconds the whole run may wait for the machine to be idle before cells (default 60)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 s cells and the quick workloads")
    p.add_argument("--only", help="comma-separated contenders: " + ",".join(CONTENDER))
    p.add_argument("--workloads", help="comma-separated workloads: " + ",".join(WORKLOAD))
    p.add_argument("--write-docs", action="store_true", help="write docs/benchmarks.md from bench/results/latest.json and exit")
    p.add_argument("--results", help="with --write-docs: the results JSON to use (default bench/results/latest.json)")
    p.add_argument("--list", action="store_true", help="list contenders and workloads and exit")
    p.add_argument("--out", help="directory of the results (default bench/results; a smoke run can keep them apart)")
    a = p.parse_args(argv)
    if a.quick:
        a.duration = 1 if "--duration" not in " ".join(argv) else a.duration
    for opt, table in (("only", CONTENDER), ("workloads", WORKLOAD)):
        v = getattr(a, opt)
        if v:
            names = [x.strip() for x in v.split(",") if x.strip()]
            bad = [x for x in names if x not in table]
            if bad:
                p.error("unknown %s: %s (known: %s)" % (opt, ",".join(bad), ",".join(table)))
            setattr(a, opt, names)
    return a


def main(argv):
    a = parse_args(argv)
    if a.list:
        for c in CONTENDERS:
            log("contender %-24s %s" % (c["name"], c["desc"]))
        for w in WORKLOADS:
            log("workload  %-24s %s%s" % (w["name"], w["desc"], " [quick]" if w.get("quick") else ""))
        return 0
    global RESULTS
    if a.out:
        RESULTS = Path(a.out).resolve()
    if a.write_docs:
        path = Path(a.results) if a.results else RESULTS / "latest.json"
        if not path.exists():
            raise SystemExit("no %s: run bench/run.sh first" % path)
        write_docs(json.loads(path.read_text()), path.parent)
        return 0

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    atexit.register(stop_all)
    t_start = time.time()
    env = Env(a)
    prepare_data(env)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")

    versions = dict(caddy=first_line([env.caddy, "version"]), pip=pip_versions(), pip_asgi=pip_versions(PIP_ASGI),
                    wrk=first_line(["wrk", "--version"]).split(" Copyright")[0], h2load=first_line(["h2load", "--version"]),
                    wsload=wsload_version())
    snake, uw, wsl = snake_status(env), uwsgi_status(), wsload_status(env)
    log("== versions")
    log("caddy (caddy-wsgi): %s" % versions["caddy"])
    for k, v in versions["pip"].items():
        log("%s: %s" % (k, v))
    log("ASGI: %s" % ", ".join("%s %s" % kv for kv in versions["pip_asgi"].items() if kv[0] != "granian"))
    log("wrk: %s; h2load: %s; wsload: %s" % (versions["wrk"], versions["h2load"], versions["wsload"]))
    if not wsl["available"]:
        log("wsload: NOT AVAILABLE (the ws-echo cells will fail)\n  " + wsl["reason"].replace("\n", "\n  "))
    log("caddy-snake: %s" % (snake.get("version") if snake["available"] else "NOT AVAILABLE\n  " + snake["reason"].replace("\n", "\n  ")))
    if not uw["available"]:
        log("uwsgi: NOT AVAILABLE\n  " + uw["reason"].replace("\n", "\n  "))

    workloads = [w for w in WORKLOADS if (a.workloads and w["name"] in a.workloads) or
                 (not a.workloads and (w.get("quick") or not a.quick))]
    contenders = [c for c in CONTENDERS if not a.only or c["name"] in a.only]
    results = dict(meta=dict(
        timestamp=stamp, command="bench/run.sh " + " ".join(shlex.quote(x) for x in argv), args=vars(a),
        machine=machine_info(), versions=versions, caddy_snake=snake, uwsgi=uw, wsload=wsl,
        git=(first_line(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"]) or "?"),
        contenders={}, workloads=[w["name"] for w in workloads]), cells=[])

    if any(w["name"] == "hello" for w in workloads):
        log("== IPC probe (for the hello cell): bench/.build/ipcprobe")
        probe = ipc_probe(env)
        results["meta"]["ipc_probe"] = probe
        log("\n".join(probe_table(probe)))

    ncells = sum(1 for c in contenders for w in workloads if applies(c, w))
    log("== %d contenders x %d workloads: %d cells of %d s (+%d s warm-up)" % (len(contenders), len(workloads), ncells,
                                                                              a.duration, a.warmup))
    for c in contenders:
        info = dict(desc=c["desc"], commands=contender_commands(env, c))
        results["meta"]["contenders"][c["name"]] = info
        skip = None
        if c["kind"] == "snake" and not snake["available"]:
            skip = "skipped: caddy-snake did not build"
        if c.get("upstream") == "uwsgi" and not uw["available"]:
            skip = "skipped: uWSGI did not install"
        venv = Path(c.get("venv", VENV))
        if c["kind"] != "respond":
            info["python"] = first_line([str(venv / "bin" / "python"), "--version"]) if (venv / "bin" / "python").exists() \
                else "no %s" % venv.relative_to(ROOT)
            info["venv"] = str(venv.relative_to(ROOT))
        if not skip and not (venv / "bin" / "python").exists():
            err = BUILD / "venv312.err"
            skip = "skipped: no %s (%s)" % (venv.relative_to(ROOT), err.read_text().strip()[:160] if err.exists() else
                                            "bench/run.sh creates it with Python 3.12 when caddy-snake is built")
        if skip:
            info["status"] = skip
        for group in GROUP_APP:
            # the workloads of another interface get no cell at all; those of the same one, n/a
            mine = [w for w in workloads if w["group"] == group and same_iface(c, w)]
            todo = [w for w in mine if applies(c, w)]
            for w in mine:
                if w not in todo:
                    results["cells"].append(dict(contender=c["name"], workload=w["name"], status="n/a"))
                elif skip:
                    results["cells"].append(dict(contender=c["name"], workload=w["name"], status=skip))
            if todo and not skip:
                results["cells"] += run_group(env, c, group, todo, info)

    # Second pass: cells during which something else used the machine are run again (within a
    # time budget, noisiest first); the attempt with the least other load is kept.
    t_retry = time.time()
    noisy = {}
    for cell in results["cells"]:
        if cell.get("status") == "ok" and cell.get("other_cpu_cores", 0) > RETRY_CORES:
            rank = HEADLINE.index(cell["workload"]) if cell["workload"] in HEADLINE else len(HEADLINE)
            noisy.setdefault((cell["contender"], WORKLOAD[cell["workload"]]["group"], rank), []).append(cell)
    # the headline rows first (hello world, Django, Flask...), then the noisiest
    order_ = sorted(noisy.items(), key=lambda kv: (kv[0][2], -max(x["other_cpu_cores"] for x in kv[1])))
    if order_ and a.retry_budget > 0:
        log("== second pass: %d noisy cells (other load > %.2f CPU), budget %.0f s" %
            (sum(len(v) for v in noisy.values()), RETRY_CORES, a.retry_budget))
    for (cname, group, rank), old in (order_ if a.retry_budget > 0 else []):
        estimate = len(old) * (a.duration + a.warmup + 1) + 3
        if time.time() - t_retry + estimate > a.retry_budget:
            continue
        noisy.pop((cname, group, rank))
        again = run_group(env, CONTENDER[cname], group, [WORKLOAD[x["workload"]] for x in old],
                          results["meta"]["contenders"][cname])
        for first, second in zip(old, again):
            if second.get("status") == "ok" and second["other_cpu_cores"] < first["other_cpu_cores"]:
                keep, drop = second, first
            else:
                keep, drop = first, second
            keep["attempts"] = 2
            keep["other_attempt"] = {k: v for k, v in drop.items() if k not in ("attempts", "other_attempt")}
            results["cells"][results["cells"].index(first)] = keep
    if noisy and a.retry_budget > 0:
        log("== retry budget spent; %d noisy cells keep their first result" % sum(len(v) for v in noisy.values()))

    # cells in contender order within each workload
    order = {c["name"]: i for i, c in enumerate(CONTENDERS)}
    results["cells"].sort(key=lambda c: (list(WORKLOAD).index(c["workload"]), order[c["contender"]]))
    results["meta"]["elapsed_s"] = time.time() - t_start
    results["summary"] = summary_line(results) if has_iface(results, "wsgi") else ""
    results["summary_asgi"] = summary_asgi(results)
    results["asgi_ratios"] = asgi_ratios(results)
    md = render_markdown(results)
    results["markdown"] = md
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("%s.md" % stamp)).write_text(md)
    (RESULTS / "latest.md").write_text(md)
    js = json.dumps(results, indent=1, default=str)
    (RESULTS / ("%s.json" % stamp)).write_text(js)
    (RESULTS / "latest.json").write_text(js)
    try:
        render_chart(results, RESULTS / ("%s.png" % stamp))
        shutil.copyfile(RESULTS / ("%s.png" % stamp), RESULTS / "latest.png")
    except Exception as e:  # noqa: BLE001
        log("!! chart failed: %s" % e)
    log("")
    log(md)
    log("results: %s/{%s,latest}.{md,json,png}" % (RESULTS, stamp))
    log("total run time: %.0f s" % results["meta"]["elapsed_s"])
    left = [p for p in LIVE if p.poll() is None]
    if left:
        log("!! processes still running at the end: %s" % [p.pid for p in left])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    finally:
        stop_all()
