"""An ASGI HTTP exchange: receive() and send() for the app (body, trailers, pathsend,
early hints), frames for Caddy."""

import os
from http import HTTPStatus

from ..codec import (
    CANCEL, DATA, END_FRAME, FLAG_ABORTED, FLAG_EOF, FLAG_FINAL, FLAG_STREAM, INFORMATIONAL,
    READ_CHUNK, TRAILERS, ProtocolError, decode_data, encode_body, encode_error, encode_file,
    encode_frame, encode_headers, encode_read, informational_block)
from .exchange import AsgiExchange, build_scope

_HTTP_DISCONNECT = {'type': 'http.disconnect'}
_PATHSEND_CHUNK = 256 * 1024
_STATUS_LINES = {s.value: ('%d %s' % (s.value, s.phrase)).encode('latin-1') for s in HTTPStatus}


def asgi_header_block(status, headers):
    """The HEADERS block of http.response.start: status line, then the byte-string pairs.
    A NUL would shift the pairs Caddy reads, so it is refused."""
    parts = [_STATUS_LINES.get(status) or b'%d Unknown' % status]
    for name, value in headers:
        parts.append(name)
        parts.append(value)
    block = b'\0'.join(parts)
    if block.count(b'\0') != len(parts) - 1:
        raise ValueError('an ASGI response header holds a NUL byte')
    return block


class AsgiHTTP(AsgiExchange):
    """One HTTP request: receive() and send() for the app, frames for Caddy."""

    __slots__ = ('scope', 'stream', 'body', 'body_done', 'disconnected', 'data', 'early',
                 'waiters', 'status', 'headers', 'trailers', 'started', 'finished')

    def __init__(self, chan, parts, flags, body):
        AsgiExchange.__init__(self, chan)
        self.scope = build_scope(parts, chan.worker.state, False) if parts is not None else None
        self.stream = bool(flags & FLAG_STREAM)
        self.body = body
        self.body_done = False
        self.disconnected = False
        self.data = None  # the future a receive() waits on for DATA
        self.early = None  # a DATA that arrived after its receive() was cancelled
        self.waiters = []  # receive() calls waiting for a disconnect
        self.status = None
        self.headers = None
        self.trailers = False
        self.started = False
        self.finished = False

    def on_frame(self, ftype, payload):
        if ftype == CANCEL:
            self._gone()
        elif ftype == DATA:
            if self.data is not None and not self.data.done():
                self.data.set_result(payload)
            else:
                self.early = payload
        else:
            raise ProtocolError('frame type 0x%02x during an HTTP exchange' % ftype)

    def _gone(self):
        """CANCEL: the client left (or the request timed out). The exchange ends now;
        the app learns it from receive() and its later sends are dropped."""
        self.disconnected = True
        self._end(END_FRAME if self.started else encode_error('the client went away'))
        self._wake()

    def _wake(self):
        if self.data is not None and not self.data.done():
            self.data.set_result(None)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def receive(self):
        if self.disconnected:
            return _HTTP_DISCONNECT
        if self.body_done:
            # Nothing more will come but a disconnect: apps (Starlette's streaming
            # responses) wait here while they send. Once the response is complete, the
            # exchange is over for Caddy and this returns at once (background tasks).
            if not self.over:
                waiter = self.chan.loop.create_future()  # one each: a cancelled waiter
                self.waiters.append(waiter)              # must not cancel the others
                await waiter
            return _HTTP_DISCONNECT
        if not self.stream:
            self.body_done = True
            return {'type': 'http.request', 'body': self.body, 'more_body': False}
        payload, self.early = self.early, None
        if payload is None:
            if self.over:
                return _HTTP_DISCONNECT
            self.chan.write(encode_read(READ_CHUNK))
            self.data = self.chan.loop.create_future()
            payload = await self.data
            if payload is None:
                return _HTTP_DISCONNECT
        flags, data = decode_data(payload)
        if flags & FLAG_ABORTED:
            self.disconnected = True
            return _HTTP_DISCONNECT
        self.body_done = bool(flags & FLAG_EOF)
        return {'type': 'http.request', 'body': data, 'more_body': not self.body_done}

    async def send(self, message):
        kind = message['type']
        if kind == 'http.response.start':
            if self.status is not None:
                raise RuntimeError('http.response.start sent twice')
            self.status = status = int(message['status'])
            self.headers = asgi_header_block(status, message.get('headers', ()))
            self.trailers = bool(message.get('trailers', False))
            return
        if kind == 'http.response.body':
            await self._body(message)
        elif kind == 'http.response.trailers':
            self._trailers(message)
        elif kind == 'http.response.pathsend':
            await self._pathsend(message['path'])
        elif kind == 'http.response.early_hint' or kind == 'http.response.informational':
            self._informational(kind, message)
        else:
            raise RuntimeError('unexpected ASGI message %r' % kind)

    def _informational(self, kind, message):
        """http.response.early_hint (asgiref: `links`, Link values) or Gunicorn's
        http.response.informational (`status`, `headers`): a 1xx ahead of the response."""
        if self.status is not None:
            raise RuntimeError('%s after http.response.start' % kind)
        if kind == 'http.response.early_hint':
            code = 103
            headers = [(b'link', link) for link in message.get('links', ())]
        else:
            code = message.get('status')
            if type(code) is not int or not 100 <= code <= 199 or code == 101:
                raise RuntimeError('http.response.informational status must be 1xx '
                                   '(not 101), got %r' % (code,))
            if code == 100:
                return  # Caddy sends 100 Continue itself when the app reads the body
            headers = message.get('headers', ())
        block = informational_block(code, headers)
        if not self.over:
            self.chan.write(encode_frame(INFORMATIONAL, block))

    async def _pathsend(self, path):
        """http.response.pathsend: Caddy sends the file itself (sendfile), as for WSGI's
        wsgi.file_wrapper; the worker only passes the open descriptor."""
        if self.status is None:
            raise RuntimeError('http.response.pathsend before http.response.start')
        if self.finished:
            raise RuntimeError('http.response.pathsend after the response ended')
        if not os.path.isabs(path):
            raise RuntimeError('http.response.pathsend needs an absolute path, got %r' % path)
        self.finished = True
        with open(path, 'rb') as f:
            if self.over:
                return
            if not self.started:
                self.started = True
                self.chan.write(encode_headers(0, self.headers, b''))
            if not self.chan.send_fd(encode_file(0, -1), f.fileno()):
                while True:  # the socket is busy: send the bytes, as a body
                    chunk = f.read(_PATHSEND_CHUNK)
                    if not chunk or self.over:
                        break
                    self.chan.write(encode_body(chunk))
                    await self.chan.drain()
        if not self.trailers:
            self._end(END_FRAME)
            self._wake()

    async def _body(self, message):
        if self.status is None:
            raise RuntimeError('http.response.body before http.response.start')
        if self.finished:
            raise RuntimeError('http.response.body after the response ended')
        body = bytes(message.get('body', b''))
        more = bool(message.get('more_body', False))
        self.finished = not more
        if self.over:
            return  # the client left; receive() tells the app
        if not self.started:
            self.started = True
            block = self.headers
            if not more and not self.trailers:
                self._end(encode_headers(FLAG_FINAL, block, body))
                self._wake()
                return
            self.chan.write(encode_headers(0, block, body))
        elif body:
            self.chan.write(encode_body(body))
        if not more and not self.trailers:
            self._end(END_FRAME)
            self._wake()
            return
        await self.chan.drain()

    def _trailers(self, message):
        if not self.trailers:
            raise RuntimeError('http.response.trailers without trailers=True in the start')
        if not self.finished:
            raise RuntimeError('http.response.trailers before the last body message')
        if self.over:
            return
        pairs = [(bytes(n).decode('latin-1'), bytes(v).decode('latin-1'))
                 for n, v in message.get('headers', ())]
        if pairs:
            block = '\0'.join(s for pair in pairs for s in pair)
            self.chan.write(encode_frame(TRAILERS, ('\0' + block).encode('latin-1')))
        if not message.get('more_trailers', False):
            self._end(END_FRAME)
            self._wake()

    async def run(self):
        if self.disconnected:  # cancelled while it waited behind another exchange
            self._end(encode_error('the client went away'))
            return
        try:
            await self.chan.worker.app(self.scope, self.receive, self.send)
        except Exception:
            self._raised()
            return
        finally:
            self._wake()
        if not self.started:
            self._end(encode_error('the ASGI app returned without sending a response'))
        else:
            self._end(END_FRAME)
