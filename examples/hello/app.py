"""A stdlib-only WSGI "hello" app for caddy-wsgi.

Run from the repository root:

    ./caddy run --config examples/hello/Caddyfile

then open http://localhost:8080/.
"""

import html
import os
import sys

# The environ keys shown on the page.
SHOWN_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "HTTP_HOST",
    "HTTP_USER_AGENT",
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "SERVER_SOFTWARE",
)


def application(environ, start_response):
    rows = "\n".join(
        "<tr><th>{}</th><td><code>{}</code></td></tr>".format(
            html.escape(key), html.escape(repr(environ.get(key, "")))
        )
        for key in SHOWN_KEYS
    )
    body = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Hello from caddy-wsgi</title></head>
<body>
<h1>Hello, world!</h1>
<p>Served by Python {python} in worker process {pid}.</p>
<table>
{rows}
</table>
</body>
</html>
""".format(
        python=html.escape(sys.version.split()[0]), pid=os.getpid(), rows=rows
    ).encode("utf-8")
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]
