"""Protected downloads the NGINX way, for the integration tests: the app decides and
answers with an empty body and X-Accel-Redirect (a path under the private root) or
X-Sendfile (an absolute path); Caddy's intercept + file_server sends the file.

GET /accel?f=NAME     X-Accel-Redirect: /NAME (any NAME, even ../escape attempts)
GET /sendfile?f=NAME  X-Sendfile: $PRIVATE_DIR/NAME
GET /ping             200 "pong" (shows the worker is free)
`application` is WSGI, `asgi_app` ASGI."""

import os
from urllib.parse import parse_qs

PRIVATE = os.environ.get('PRIVATE_DIR', '/nonexistent')


def _answer(path, query):
    name = parse_qs(query).get('f', [''])[0]
    if path == '/accel':
        header = ('X-Accel-Redirect', '/' + name)
    elif path == '/sendfile':
        header = ('X-Sendfile', os.path.join(PRIVATE, name))
    elif path == '/ping':
        return '200 OK', [('Content-Type', 'text/plain')], b'pong'
    else:
        return '404 Not Found', [('Content-Type', 'text/plain')], b'no route'
    return '200 OK', [header, ('Content-Disposition', 'attachment; filename="%s"' % name),
                      ('Content-Type', 'application/octet-stream'), ('X-App', 'decided')], b''


def application(environ, start_response):
    status, headers, body = _answer(environ['PATH_INFO'], environ['QUERY_STRING'])
    start_response(status, headers)
    return [body]


async def asgi_app(scope, receive, send):
    if scope['type'] != 'http':
        return
    path = scope['path'][len(scope['root_path']):]  # ASGI paths include the root path
    status, headers, body = _answer(path, scope['query_string'].decode('latin-1'))
    await send({'type': 'http.response.start', 'status': int(status[:3]),
                'headers': [(n.lower().encode(), v.encode('latin-1')) for n, v in headers]})
    await send({'type': 'http.response.body', 'body': body})
