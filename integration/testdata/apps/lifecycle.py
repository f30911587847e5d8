"""Lifecycle test app (stdlib only) for the worker-lifecycle integration tests: timeouts,
recycling, reloads, hooks, autoscaling, preload.

Routing is on PATH_INFO, parameters come from the query string. MARKER_DIR (set with the
`env` subdirective) is where markers go: `inflight-<id>` (the pid serving a request, written
before the request blocks) and `import-<pid>` (one per process that imported this module).

Environment knobs (set with `env`):
  LIFECYCLE_IMPORT_FAIL=1     the import raises RuntimeError("lifecycle import failure requested")
  LIFECYCLE_IMPORT_SLEEP=<s>  the import takes that long (in slow_import)
  LIFECYCLE_TAG=<text>        echoed by /pid as "tag"
"""
import itertools
import json
import os
import sys
import time
from urllib.parse import parse_qs

VERSION = "v1"

MARKER_DIR = os.environ.get("MARKER_DIR", "")
MIB = 1024 * 1024


def _marker(name, content=""):
    if not MARKER_DIR:
        return
    path = os.path.join(MARKER_DIR, name)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(content)
    os.rename(tmp, path)


def slow_import(seconds):
    time.sleep(seconds)


if os.environ.get("LIFECYCLE_IMPORT_FAIL"):
    raise RuntimeError("lifecycle import failure requested")

_import_sleep = float(os.environ.get("LIFECYCLE_IMPORT_SLEEP", "0") or 0)
if _import_sleep > 0:
    slow_import(_import_sleep)

_marker("import-%d" % os.getpid(), "%d %d" % (os.getpid(), os.getppid()))

_hog = []  # /grow appends here


def _q(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def _rss_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _json(start_response, doc, status="200 OK"):
    out = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(out))),
                            ("X-Pid", str(os.getpid()))])
    return [out]


def _info(environ):
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "version": VERSION,
        "tag": os.environ.get("LIFECYCLE_TAG", ""),
        "hook": environ.get("HOOKS_PRE_REQUEST"),
    }


def _inflight(environ):
    rid = _q(environ).get("id")
    if rid:
        _marker("inflight-" + rid, str(os.getpid()))


# --- stuck requests (the function names appear in the timeout stack dumps) --------------------

def loop_forever():
    n = 0
    while True:
        n += 1


def sleep_long(seconds):
    time.sleep(seconds)


def c_spin():
    # C code that never releases the GIL
    return sum(itertools.repeat(1, 10 ** 13))


def stall_after_first(environ):
    yield b"first block\n"
    sleep_long(3600)
    yield b"never\n"


def drip(n, interval):
    for i in range(n):
        if i:
            time.sleep(interval)
        yield ("block %d\n" % i).encode()


# --- the app ----------------------------------------------------------------------------------

def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = _q(environ)
    if path in ("/", "/pid"):
        return _json(start_response, _info(environ))
    if path == "/sleep":
        _inflight(environ)
        sleep_long(float(q.get("s", "3600")))
        return _json(start_response, _info(environ))
    if path == "/loop":
        _inflight(environ)
        loop_forever()
    if path == "/cspin":
        _inflight(environ)
        c_spin()
        return _json(start_response, _info(environ))
    if path == "/stall":
        _inflight(environ)
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
        return stall_after_first(environ)
    if path == "/drip":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
        return drip(int(q.get("n", "5")), float(q.get("interval", "0.3")))
    if path == "/grow":
        mb = int(q.get("mb", "20"))
        _hog.append(b"\x01" * (mb * MIB))  # touched pages: resident
        doc = _info(environ)
        doc.update(rss_kib=_rss_kib(), chunks=len(_hog))
        return _json(start_response, doc)
    if path == "/rss":
        doc = _info(environ)
        doc.update(rss_kib=_rss_kib())
        return _json(start_response, doc)
    if path == "/status":
        code = q.get("code", "200")
        reasons = {"200": "OK", "404": "Not Found", "418": "I'm a teapot", "500": "Internal Server Error",
                   "503": "Service Unavailable"}
        return _json(start_response, _info(environ), status="%s %s" % (code, reasons.get(code, "Whatever")))
    if path == "/raise":
        raise RuntimeError("lifecycle /raise requested")
    if path == "/environ":
        doc = _info(environ)
        doc["value"] = environ.get(q.get("k", ""))
        return _json(start_response, doc)
    return _json(start_response, {"error": "no route", "path": path}, status="404 Not Found")
