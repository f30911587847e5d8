"""Environ probe for the integration tests, wrapped in wsgiref.validate.

GET/POST anything: answers 200 with a JSON document describing the environ it was called
with and the request body it read (through wsgi.input.read(n) only, as the validator
requires). Stdlib only.
"""
import hashlib
import json
import os
import sys
from wsgiref.validate import validator

PROBE_VERSION = 1


def _probe(environ, start_response):
    inp = environ["wsgi.input"]
    cl = environ.get("CONTENT_LENGTH", "")
    chunks = []
    if cl:
        remaining = int(cl)
        while remaining > 0:
            b = inp.read(min(remaining, 65536))
            if not b:
                break
            chunks.append(b)
            remaining -= len(b)
    else:
        # wsgi.input_terminated: reading until b'' is allowed without CONTENT_LENGTH
        while True:
            b = inp.read(65536)
            if not b:
                break
            chunks.append(b)
    body = b"".join(chunks)
    # a second read after the end must give b''
    after = inp.read(1)

    env = {}
    types = {}
    for k, v in environ.items():
        if isinstance(v, str):
            env[k] = v
            # every CGI value must be latin-1 representable (bytes-as-latin-1)
            v.encode("latin-1")
        types[k] = type(v).__name__
    doc = {
        "env": env,
        "types": types,
        "environ_is_dict": type(environ) is dict,
        "wsgi": {
            "version": list(environ["wsgi.version"]),
            "url_scheme": environ["wsgi.url_scheme"],
            "multithread": environ["wsgi.multithread"],
            "multiprocess": environ["wsgi.multiprocess"],
            "run_once": environ["wsgi.run_once"],
            "input_terminated": environ.get("wsgi.input_terminated"),
            "has_file_wrapper": "wsgi.file_wrapper" in environ,
        },
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_head": body[:200].decode("latin-1"),
        "read_after_eof": after.decode("latin-1"),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "prefix": sys.prefix,
        "executable": sys.executable,
        "cwd": os.getcwd(),
        "sys_path": sys.path[:8],
        "osenv": {k: v for k, v in os.environ.items() if k.startswith("PROBE_")},
    }
    out = json.dumps(doc, sort_keys=True).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("X-Pid", str(os.getpid()))])
    return [out]


application = validator(_probe)


def make_app():
    """Factory used by the `probe:make_app()` app spec."""
    return application


probe_app = application
