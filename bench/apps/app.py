"""Plain WSGI app of the caddy-wsgi benchmark suite (stdlib only).

Routes (one module so that every server is started once for all of them):
  /hello           13-byte "Hello, world!"
  /json4k          a ~4 KiB JSON document, serialised on every request
  /stream?mib=N    N MiB streamed from a generator in 64 KiB blocks (Content-Length set)
  /upload          POST: reads the whole body, answers {"bytes": n}
  /file            the file named by $BENCH_FILE via wsgi.file_wrapper
  /slow            time.sleep(0.05), then a short body
"""
import json
import os
import time

HELLO = b"Hello, world!"
BLOCK = bytes(range(256)) * 256  # 64 KiB
FILE = os.environ.get("BENCH_FILE", "")

# ~4 KiB once serialised (bench/run.py checks the size).
DOC = {
    "items": [
        {"id": i, "name": "item-%03d" % i, "price": round(i * 1.25, 2), "tags": ["a", "b", "c"], "ok": i % 2 == 0}
        for i in range(56)
    ]
}


def json_body():
    return json.dumps(DOC, separators=(",", ":")).encode()


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


def json4k(environ, start_response):
    body = json_body()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def stream(environ, start_response):
    mib = 1
    for part in environ.get("QUERY_STRING", "").split("&"):
        if part.startswith("mib="):
            mib = int(part[4:])
    n = mib * 16
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n * len(BLOCK)))])

    def gen():
        for _ in range(n):
            yield BLOCK

    return gen()


def upload(environ, start_response):
    inp = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    total = 0
    if length:
        left = int(length)
        while left > 0:
            chunk = inp.read(min(left, 65536))
            if not chunk:
                break
            total += len(chunk)
            left -= len(chunk)
    else:
        while True:
            chunk = inp.read(65536)
            if not chunk:
                break
            total += len(chunk)
    body = b'{"bytes": %d}' % total
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def file(environ, start_response):
    f = open(FILE, "rb")
    size = os.fstat(f.fileno()).st_size
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None:
        return wrapper(f, 1 << 20)
    return iter(lambda: f.read(1 << 20), b"")


def slow(environ, start_response):
    time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"slept"]


ROUTES = {"/hello": hello, "/json4k": json4k, "/stream": stream, "/upload": upload, "/file": file, "/slow": slow}


def not_found(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]


def application(environ, start_response):
    return ROUTES.get(environ.get("PATH_INFO", ""), not_found)(environ, start_response)


if __name__ == "__main__":
    print(len(json_body()))
