"""Environ probe for the differential test (integration/differential_test.go).

Stdlib only. Served both by gunicorn and by caddy-wsgi; answers every request with the WSGI
environ as JSON: str values as they are, any other value as its repr(). It reads the whole
request body (wsgi.input.read() until EOF, as an app that trusts the server does) and reports
its length and SHA-256 under keys starting with "probe.", which are not environ keys.
"""

import hashlib
import json


def application(environ, start_response):
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        size += len(chunk)
        digest.update(chunk)
    out = {}
    for key, value in environ.items():
        out[key] = value if isinstance(value, str) else repr(value)
    out["probe.body_len"] = str(size)
    out["probe.body_sha256"] = digest.hexdigest()
    # How an app would decode PATH_INFO (PEP 3333: bytes as latin-1, usually UTF-8 URLs).
    out["probe.path_info_utf8"] = environ.get("PATH_INFO", "").encode("latin-1").decode(
        "utf-8", "replace"
    )
    body = json.dumps(out, sort_keys=True).encode("utf-8")
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
