"""Behaviour app for the integration tests (stdlib only, deliberately NOT validated: some
endpoints violate the spec on purpose). Routing is on PATH_INFO; parameters come from the
query string. MARKER_DIR (set with the `env` subdirective) is where close()/pid markers go.
"""
import hashlib
import io
import json
import os
import signal
import sys
import threading
import time
from urllib.parse import parse_qs

MARKER_DIR = os.environ.get("MARKER_DIR", "/tmp")


def _q(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def _marker(name, content=""):
    path = os.path.join(MARKER_DIR, name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(content)
    os.rename(tmp, path)


def _json(start_response, doc, status="200 OK", extra=()):
    out = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(out))),
                            ("X-Pid", str(os.getpid()))] + list(extra))
    return [out]


# --- wsgi.input ------------------------------------------------------------------------------

def input_ops(environ, start_response):
    """ops=read:7,readline,readline:4,readlines,iter,read ... executed in order on wsgi.input.
    Each result is reported as the list of byte strings it produced: lens + sha256 (+ hex
    of the first 64 bytes of each item when the item is short)."""
    q = _q(environ)
    inp = environ["wsgi.input"]
    results = []
    for op in q.get("ops", "").split(","):
        if not op:
            continue
        name, _, arg = op.partition(":")
        if name == "read":
            items = [inp.read(int(arg))] if arg else [inp.read()]
        elif name == "readline":
            items = [inp.readline(int(arg))] if arg else [inp.readline()]
        elif name == "readlines":
            items = inp.readlines()
        elif name == "iter":
            items = list(iter(inp))
        else:
            raise ValueError("unknown op %r" % op)
        for it in items:
            if type(it) is not bytes:
                raise TypeError("wsgi.input.%s returned %r" % (name, type(it)))
        joined = b"".join(items)
        results.append({
            "op": op,
            "lens": [len(i) for i in items],
            "sha256": hashlib.sha256(joined).hexdigest(),
            "hex": joined[:64].hex(),
        })
    return _json(start_response, {"results": results,
                                  "content_length": environ.get("CONTENT_LENGTH"),
                                  "input_terminated": environ.get("wsgi.input_terminated")})


# --- streaming -------------------------------------------------------------------------------

def stream(environ, start_response):
    """n blocks of size bytes each (the same bytes object: no allocation per block)."""
    q = _q(environ)
    n, size = int(q.get("n", "4")), int(q.get("size", "65536"))
    block = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("X-Pid", str(os.getpid()))])

    def gen():
        for _ in range(n):
            yield block
    return gen()


_PATTERNS = {}


def pattern_stream(environ, start_response):
    """pattern(total) in blocks of the sizes given (cycled), from a generator that sleeps
    `pace` seconds between blocks; with list=1, as a list of one bytes (the single-frame
    path)."""
    q = _q(environ)
    total = int(q["total"])
    sizes = [int(x) for x in q.get("sizes", "65536").split(",")]
    pace = float(q.get("pace", "0"))
    data = _PATTERNS.get(total)
    if data is None:
        data = _PATTERNS[total] = pattern(total)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("X-Pid", str(os.getpid()))])
    if q.get("list") == "1":
        return [data]

    def gen():
        view = memoryview(data)
        pos, i = 0, 0
        while pos < total:
            n = sizes[i % len(sizes)]
            if pace and i:
                time.sleep(pace)
            yield bytes(view[pos:pos + n])
            pos += n
            i += 1
    return gen()


def wait_file(environ, start_response):
    """Yields a first block, then blocks until MARKER_DIR/<name> exists (at most 20 s)."""
    q = _q(environ)
    path = os.path.join(MARKER_DIR, q["name"])
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"first-block\n"
        deadline = time.time() + 20
        while not os.path.exists(path):
            if time.time() > deadline:
                yield b"timeout-waiting-for-file\n"
                return
            time.sleep(0.01)
        yield b"second-block\n"
    return gen()


def lazy_start(environ, start_response):
    """start_response is called on the first next() (generator body), then an empty block,
    then a real one."""
    def gen():
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Lazy", "1")])
        yield b""
        yield b"lazy-body"
    return gen()


def empty_then_raise(environ, start_response):
    """Headers set, an empty block, then an exception: nothing was sent yet, so 500."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Should-Not-Appear", "1")])

    def gen():
        yield b""
        raise RuntimeError("boom-before-first-block")
    return gen()


def error_after_headers(environ, start_response):
    q = _q(environ)
    headers = [("Content-Type", "text/plain")]
    if q.get("cl"):
        headers.append(("Content-Length", q["cl"]))
    start_response("200 OK", headers)

    def gen():
        yield b"partial-block\n"
        time.sleep(0.05)
        raise RuntimeError("boom-after-headers-" + q.get("id", ""))
    return gen()


# --- close() ---------------------------------------------------------------------------------

class Tracked:
    """Iterable whose close() writes MARKER_DIR/closed-<id>."""

    def __init__(self, ident, mode):
        self.ident, self.mode, self.i = ident, mode, 0
        self.block = b"x" * 65536

    def __iter__(self):
        return self

    def __next__(self):
        self.i += 1
        if self.mode == "ok":
            if self.i > 3:
                raise StopIteration
            return b"block-%d\n" % self.i
        if self.mode == "raise":
            if self.i == 1:
                return b"first\n"
            raise RuntimeError("tracked-raise-" + self.ident)
        if self.mode == "slow":  # endless-ish stream, bounded to ~60 s
            if self.i > 6000:
                raise StopIteration
            if self.i > 1:
                time.sleep(0.01)
            return self.block
        raise StopIteration

    def close(self):
        _marker("closed-" + self.ident, "%d %d" % (os.getpid(), self.i))


def close_track(environ, start_response):
    q = _q(environ)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Tracked(q["id"], q.get("mode", "ok"))


# --- start_response / write / exc_info ------------------------------------------------------

def write_app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"A")
    write(b"B")
    return [b"C", b"D"]


def exc_info_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html"), ("X-First", "1")])
    try:
        raise ValueError("oops")
    except ValueError:
        start_response("500 Oops", [("Content-Type", "text/plain"), ("X-Second", "1")], sys.exc_info())
    return [b"oops-body"]


def double_start(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Second-Call", "1")])
    return [b"second start_response was accepted"]


def empty_app(environ, start_response):
    q = _q(environ)
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Empty", q.get("kind", "list"))])
    if q.get("kind") == "gen":
        def gen():
            yield b""
            yield b""
        return gen()
    return []


def str_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["this is a str, not bytes"]


def bad_header(environ, start_response):
    q = _q(environ)
    kind = q.get("kind", "value-crlf")
    if kind == "value-crlf":
        h = ("X-Test", "a\r\nX-Injected: 1")
    elif kind == "value-lf":
        h = ("X-Test", "a\nX-Injected: 1")
    elif kind == "value-cr":
        h = ("X-Test", "a\rX-Injected: 1")
    elif kind == "name-crlf":
        h = ("X-Test\r\nX-Injected", "1")
    elif kind == "value-nul":
        h = ("X-Test", "a\x00X-Injected: 1")
    elif kind == "status-crlf":
        start_response("200 OK\r\nX-Injected: 1", [("Content-Type", "text/plain")])
        return [b"body"]
    else:
        raise ValueError(kind)
    start_response("200 OK", [("Content-Type", "text/plain"), h])
    return [b"should-not-be-sent"]


def hop_by_hop(environ, start_response):
    body = b"hop-body"
    start_response("200 OK", [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
        ("Connection", "keep-alive, X-Secret"),
        ("Keep-Alive", "timeout=99"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Proxy-Authenticate", "Basic realm=x"),
        ("TE", "trailers"),
        ("X-Secret", "kept-or-not"),
        ("X-Ok", "yes"),
    ])
    return [body]


def status_body(environ, start_response):
    """status=<code>: a body (which the server must not send for 204/304/HEAD)."""
    q = _q(environ)
    code = q.get("status", "200")
    reasons = {"200": "OK", "204": "No Content", "304": "Not Modified"}
    headers = [("X-Status-App", code)]
    if code == "200":
        headers.append(("Content-Type", "text/plain"))
    start_response("%s %s" % (code, reasons.get(code, "X")), headers)
    return [b"body-that-must-not-be-sent-for-" + code.encode()]


def content_length(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
    return [b"hello", b" ", b"world"]


# --- logging ---------------------------------------------------------------------------------

def log_app(environ, start_response):
    q = _q(environ)
    tok = q["tok"]
    environ["wsgi.errors"].write("errors-marker-%s\n" % tok)
    environ["wsgi.errors"].writelines(["errors-lines-%s\n" % tok])
    environ["wsgi.errors"].flush()
    print("print-marker-%s" % tok)
    print("stderr-marker-%s" % tok, file=sys.stderr)
    return _json(start_response, {"pid": os.getpid()})


# --- files -----------------------------------------------------------------------------------

def file_wrapper_app(environ, start_response):
    q = _q(environ)
    f = open(q["path"], "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("X-Pid", str(os.getpid()))])
    return environ["wsgi.file_wrapper"](f, 65536)


class TrackedBytesIO(io.BytesIO):
    def __init__(self, data, ident):
        super().__init__(data)
        self.ident = ident

    def close(self):
        if self.ident:
            _marker("closed-" + self.ident, str(os.getpid()))
        super().close()


def pattern(size):
    """Deterministic non-repeating-ish content: sha256 counter blocks."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d" % i).digest()
        i += 1
    return bytes(out[:size])


def file_wrapper_bytesio(environ, start_response):
    q = _q(environ)
    data = pattern(int(q.get("size", "100000")))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](TrackedBytesIO(data, q.get("id", "")), int(q.get("blk", "8192")))


# --- pool ------------------------------------------------------------------------------------

def pid_app(environ, start_response):
    return _json(start_response, {"pid": os.getpid(), "thread": threading.get_ident()})


def sleep_app(environ, start_response):
    q = _q(environ)
    if q.get("id"):
        _marker("inflight-" + q["id"], str(os.getpid()))
    time.sleep(float(q.get("s", "1")))
    return _json(start_response, {"pid": os.getpid(), "slept": float(q.get("s", "1"))})


def exit_app(environ, start_response):
    sys.stdout.flush()
    os._exit(int(_q(environ).get("code", "1")))


def kill_self(environ, start_response):
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(5)
    return _json(start_response, {"survived": True})


ROUTES = {
    "/input": input_ops,
    "/stream": stream,
    "/pattern-stream": pattern_stream,
    "/wait-file": wait_file,
    "/lazy-start": lazy_start,
    "/empty-then-raise": empty_then_raise,
    "/error-after-headers": error_after_headers,
    "/close-track": close_track,
    "/write": write_app,
    "/exc-info": exc_info_app,
    "/str-body": str_body,
    "/empty": empty_app,
    "/double-start": double_start,
    "/bad-header": bad_header,
    "/hop": hop_by_hop,
    "/status": status_body,
    "/content-length": content_length,
    "/log": log_app,
    "/file": file_wrapper_app,
    "/file-bytesio": file_wrapper_bytesio,
    "/pid": pid_app,
    "/sleep": sleep_app,
    "/exit": exit_app,
    "/kill-self": kill_self,
}


def application(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO", ""))
    if handler is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no route " + environ.get("PATH_INFO", "").encode("latin-1")]
    return handler(environ, start_response)


def create_app():
    return application
