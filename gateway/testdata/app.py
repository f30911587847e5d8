"""Apps for the gateway tests (stdlib only)."""
import json
import time


def application(environ, start_response):
    path = environ['PATH_INFO']
    if path == '/env':
        body = json.dumps({k: v for k, v in environ.items() if isinstance(v, str)}).encode()
        start_response('200 OK', [('Content-Type', 'application/json')])
        return [body]
    if path == '/echo':
        body = environ['wsgi.input'].read()
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return [body]
    if path == '/stream':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return (b'chunk%d\n' % i for i in range(5))
    if path == '/framework':
        # As Flask and Django answer: an iterable that is not a list, with Content-Length.
        start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '5')])
        return iter([b'hello'])
    if path == '/slow':
        time.sleep(float(environ.get('QUERY_STRING') or '0.05'))
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello']
