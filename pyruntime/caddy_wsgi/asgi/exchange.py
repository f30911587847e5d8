"""What HTTP requests and WebSockets of an ASGI worker share: the scope built from the
REQUEST pairs, and the end of an exchange (its last frame frees the channel)."""

import sys
import traceback

from ..codec import encode_error

ASGI_VERSION = {'version': '3.0', 'spec_version': '2.4'}
_ASGI_HTTP_VERSIONS = {'HTTP/1.0': '1.0', 'HTTP/1.1': '1.1', 'HTTP/2.0': '2', 'HTTP/3.0': '3'}


def build_scope(parts, state, websocket):
    """The scope from the REQUEST pairs: CGI keys, and `~name` pairs for the headers in the
    order received (ASGI keeps duplicates apart, unlike the environ)."""
    env = {}
    headers = []
    it = iter(parts)
    for key, value in zip(it, it):
        if key[0] == '~':
            headers.append((key[1:].encode('latin-1'), value.encode('latin-1')))
        else:
            env[key] = value
    path = env['PATH_INFO']
    root = env['SCRIPT_NAME']
    if root:
        path = root + path
    raw = env.get('RAW_URI', '').split('?', 1)[0] or path
    scheme = env['wsgi.url_scheme']
    port = env.get('REMOTE_PORT')
    scope = {
        'type': 'http',
        'asgi': ASGI_VERSION,
        'http_version': _ASGI_HTTP_VERSIONS.get(env['SERVER_PROTOCOL'], '1.1'),
        'method': env['REQUEST_METHOD'],
        'scheme': scheme,
        # ASGI paths are full paths (root_path included) decoded as UTF-8.
        'path': path if path.isascii() else path.encode('latin-1').decode('utf-8', 'replace'),
        'raw_path': raw.encode('latin-1'),
        'query_string': env['QUERY_STRING'].encode('latin-1'),
        'root_path': root if root.isascii() else root.encode('latin-1').decode('utf-8', 'replace'),
        'headers': headers,
        'client': (env['REMOTE_ADDR'], int(port)) if port else None,
        'server': (env['SERVER_NAME'], int(env['SERVER_PORT'] or 0)),
        'state': state.copy() if state else {},
    }
    if websocket:
        scope['type'] = 'websocket'
        scope['scheme'] = 'wss' if scheme == 'https' else 'ws'
        del scope['method']
        protocols = []
        for name, value in headers:
            if name == b'sec-websocket-protocol':
                protocols += [p.strip() for p in value.decode('latin-1').split(',') if p.strip()]
        scope['subprotocols'] = protocols
        scope['extensions'] = {'websocket.http.response': {}}
    else:
        scope['extensions'] = {'http.response.trailers': {}, 'http.response.pathsend': {},
                               'http.response.early_hint': {}}
    return scope


class AsgiExchange:
    """What HTTP requests and WebSockets share: the end of the exchange. The channel is
    free for the next REQUEST as soon as the last frame of the exchange is written, even
    if the app goes on (background tasks, an app that ignores a disconnect)."""

    __slots__ = ('chan', 'over', 'running')

    def __init__(self, chan):
        self.chan = chan
        self.over = False  # the last frame is written
        self.running = False  # the app was called (an exchange may wait behind another)

    def _end(self, frame=None):
        """Write the exchange's last frame (once) and free the channel. Only the running
        exchange writes: one cancelled while queued ends when its turn comes."""
        if self.over or not self.running:
            return
        if frame is not None:
            self.chan.write(frame)
        self.over = True
        self.chan.ended()

    def _raised(self):
        """The app raised: ERROR ends the exchange, or, when it is over, the log has it."""
        text = traceback.format_exc()
        if self.over:
            sys.stderr.write('ASGI app raised after its response was complete:\n' + text)
        else:
            self._end(encode_error(text))
