"""Fault-injection app for the reliability and security integration tests (stdlib only).

Routing is on PATH_INFO, parameters come from the query string. MARKER_DIR (set with the
`env` subdirective) is where markers go:
  inflight-<id>   the pid serving a request, written before the request blocks or crashes
  import-<pid>    "uid gid euid egid groups" of each process that imported this module
  reached-<id>    the app was called for request <id> (request-limit tests)
  closed-<id>     close() of an iterable ran ("<pid> <reason>")
"""
import ctypes
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs

MARKER_DIR = os.environ.get("MARKER_DIR", "")


def _marker(name, content=""):
    if not MARKER_DIR:
        return
    path = os.path.join(MARKER_DIR, name)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(content)
    os.rename(tmp, path)


def _ids():
    return {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "euid": os.geteuid(),
        "egid": os.getegid(),
        "groups": sorted(os.getgroups()),
    }


_i = _ids()
_marker("import-%d" % os.getpid(), "%d %d %d %d %s" % (
    _i["uid"], _i["gid"], _i["euid"], _i["egid"], ",".join(str(g) for g in _i["groups"])))

BIG_CACHE = {}


def _q(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def _json(start_response, doc, status="200 OK"):
    out = json.dumps(doc, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(out))),
                            ("X-Pid", str(os.getpid()))])
    return [out]


def _inflight(q):
    if q.get("id"):
        _marker("inflight-" + q["id"], str(os.getpid()))


# --- crashes ------------------------------------------------------------------------------

def segv(environ, start_response):
    q = _q(environ)
    _inflight(q)
    time.sleep(float(q.get("delay", "0")))
    sys.stdout.flush()
    ctypes.string_at(0)  # SIGSEGV: faulthandler prints the stack, then the process dies
    return _json(start_response, {"survived": True})


def exit_app(environ, start_response):
    q = _q(environ)
    _inflight(q)
    time.sleep(float(q.get("delay", "0")))
    sys.stdout.flush()
    os._exit(int(q.get("code", "1")))


def sleep_app(environ, start_response):
    q = _q(environ)
    _inflight(q)
    time.sleep(float(q.get("s", "1")))
    return _json(start_response, {"pid": os.getpid(), "slept": float(q.get("s", "1"))})


# --- garbage on the channel (fd 3 is channel 0 of the worker) ------------------------------

GARBAGE = {
    # a length far over the 16 MiB limit
    "oversize": b"\xff" * 64,
    # a well-formed head with an unknown frame type
    "unknown": b"\x00\x00\x00\x04\x7fabcd",
    # a BODY frame before any HEADERS
    "body-first": b"\x00\x00\x00\x05\x11hello",
    # HEADERS whose block length runs past the payload
    "bad-headers": b"\x00\x00\x00\x05\x10\x00\xff\xff\xff\xff",
}


def garbage(environ, start_response):
    q = _q(environ)
    _inflight(q)
    os.write(3, GARBAGE[q.get("kind", "oversize")])
    time.sleep(float(q.get("block", "3600")))  # block: Caddy must not wait for us
    return _json(start_response, {"survived": True})


def garbage_idle(environ, start_response):
    """Answers normally, then writes garbage on the channel while the exchange is over."""
    q = _q(environ)
    kind = q.get("kind", "oversize")

    def later():
        time.sleep(float(q.get("after", "0.3")))
        os.write(3, GARBAGE[kind])
    threading.Thread(target=later, daemon=True).start()
    return _json(start_response, {"pid": os.getpid()})


# --- identity and environment ----------------------------------------------------------------

def ids(environ, start_response):
    return _json(start_response, _ids())


def env_app(environ, start_response):
    return _json(start_response, {"pid": os.getpid(), "env": dict(os.environ)})


def echo(environ, start_response):
    """Echoes the tok query parameter (the response-mixup test)."""
    tok = _q(environ).get("tok", "")
    body = ("%s %d" % (tok, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def pid_app(environ, start_response):
    return _json(start_response, {"pid": os.getpid()})


# --- slow clients ------------------------------------------------------------------------

def big(environ, start_response):
    """One bytes object of mb MiB (a one-frame response, as Flask and Django give)."""
    mb = int(_q(environ).get("mb", "4"))
    body = BIG_CACHE.get(mb)
    if body is None:
        body = BIG_CACHE[mb] = (b"0123456789abcdef" * 65536) * mb
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


def upload_len(environ, start_response):
    """Reads the whole body; answers its length."""
    inp = environ["wsgi.input"]
    n = 0
    while True:
        b = inp.read(65536)
        if not b:
            break
        n += len(b)
    return _json(start_response, {"pid": os.getpid(), "len": n})


class UploadTracked:
    """Reads wsgi.input while being iterated; close() writes closed-<id>."""

    def __init__(self, environ, ident):
        self.inp = environ["wsgi.input"]
        self.ident = ident
        self.n = 0
        self.done = False
        self.reason = "not-iterated"

    def __iter__(self):
        return self

    def __next__(self):
        if self.done:
            raise StopIteration
        self.reason = "reading"
        b = self.inp.read(65536)
        if b:
            self.n += len(b)
            if self.n >= 4096 and not os.path.exists(os.path.join(MARKER_DIR, "reading-" + self.ident)):
                _marker("reading-" + self.ident, str(os.getpid()))
            return b""  # nothing to send yet
        self.done = True
        self.reason = "eof"
        return b"read %d\n" % self.n

    def close(self):
        _marker("closed-" + self.ident, "%d %s %d" % (os.getpid(), self.reason, self.n))


def upload_track(environ, start_response):
    q = _q(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return UploadTracked(environ, q["id"])


# --- request limits ------------------------------------------------------------------------

def reached(environ, start_response):
    """Writes reached-<id> when called, then reads the body."""
    q = _q(environ)
    _marker("reached-" + q.get("id", "none"), str(os.getpid()))
    return upload_len(environ, start_response)


ROUTES = {
    "/segv": segv,
    "/exit": exit_app,
    "/sleep": sleep_app,
    "/garbage": garbage,
    "/garbage-idle": garbage_idle,
    "/ids": ids,
    "/env": env_app,
    "/pid": pid_app,
    "/echo": echo,
    "/big": big,
    "/upload": upload_len,
    "/upload-track": upload_track,
    "/reached": reached,
}


def application(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO", ""))
    if handler is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no route"]
    return handler(environ, start_response)
