"""ASGI probe for the differential scope test (integration/asgi_differential_test.go).

Every HTTP request is answered with its scope as JSON: bytes become latin-1 strings, and
"kinds" records the Python type of each key (and of each header item), so that b"/x" and "/x"
are not taken for the same value. The request body (all http.request messages, concatenated)
is in "body". The same JSON, base64-encoded, is in the x-scope response header, so a HEAD
request shows its scope too. The same file is served by Uvicorn and by caddy's asgi directive.
"""
import base64
import json


def _plain(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode('latin-1')
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return repr(v)


def _kind(v):
    if isinstance(v, (list, tuple)):
        return 'seq[' + ','.join(_kind(x) for x in v) + ']'
    if v is None:
        return 'none'
    return type(v).__name__


def _header_kinds(headers):
    kinds = set()
    for item in headers:
        kinds.add(_kind(list(item)))
    return sorted(kinds)


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message['type'] == 'lifespan.startup':
            await send({'type': 'lifespan.startup.complete'})
        elif message['type'] == 'lifespan.shutdown':
            await send({'type': 'lifespan.shutdown.complete'})
            return


async def app(scope, receive, send):
    if scope['type'] == 'lifespan':
        await _lifespan(receive, send)
        return
    if scope['type'] != 'http':
        raise RuntimeError('the probe serves HTTP only, not %r' % scope['type'])
    body = bytearray()
    messages = []
    while True:
        message = await receive()
        messages.append(message['type'])
        if message['type'] != 'http.request':
            break
        body += message.get('body', b'')
        if not message.get('more_body', False):
            break
    kinds = {key: _kind(value) for key, value in scope.items()}
    kinds['headers'] = _header_kinds(scope.get('headers', []))
    out = {
        'scope': _plain(scope),
        'kinds': kinds,
        'body': bytes(body).decode('latin-1'),
        'messages': messages,
    }
    payload = json.dumps(out, sort_keys=True).encode('utf-8')
    await send({
        'type': 'http.response.start',
        'status': 200,
        'headers': [
            (b'content-type', b'application/json'),
            (b'content-length', str(len(payload)).encode('ascii')),
            (b'x-scope', base64.b64encode(payload)),
        ],
    })
    await send({'type': 'http.response.body', 'body': payload})
