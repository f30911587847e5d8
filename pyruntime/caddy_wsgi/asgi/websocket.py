"""An ASGI WebSocket exchange: Caddy did the HTTP side of the handshake and relays the
messages; a denial response (websocket.http.response) is an HTTP exchange inside it."""

import collections

from ..codec import (
    CANCEL, END_FRAME, FLAG_MORE, WS_ACCEPT, WS_CLOSE, WS_DISCONNECT, WS_RECEIVE, ProtocolError,
    decode_ws_close, decode_ws_message, encode_error, encode_frame, encode_ws_close,
    encode_ws_message)
from ..transport import ClientDisconnected
from .exchange import AsgiExchange, build_scope
from .http import AsgiHTTP

_WS_GONE = 1006  # the close code when the client vanished without a close frame
# Unread WebSocket messages a worker keeps per connection before it closes it with 1008.
_WS_MAX_UNREAD = 1024
_WS_MAX_UNREAD_BYTES = 16 * 1024 * 1024


class AsgiWebSocket(AsgiExchange):
    """One WebSocket: Caddy did the HTTP side of the handshake and relays messages."""

    def __init__(self, chan, parts, flags, body):
        AsgiExchange.__init__(self, chan)
        self.scope = build_scope(parts, chan.worker.state, True)
        self.inbox = collections.deque()
        self.waiter = None
        self.connected = False  # websocket.connect delivered
        self.state = 'connecting'  # accepted, closed, denying (an HTTP denial response)
        self.close_code = None  # set when the client closed or vanished
        self.denial = None  # an AsgiHTTP for a denial response
        self.queued = 0  # bytes of unread messages in the inbox
        self.parts = []  # the first frames of a message that came with MORE
        self.overflow = False

    def on_frame(self, ftype, payload):
        if ftype == WS_RECEIVE:
            binary, data = decode_ws_message(payload)
            if self.overflow:
                return  # closing: the app could not keep up
            if payload[0] & FLAG_MORE or self.parts:  # a message over one frame
                self.parts.append(data)
                if payload[0] & FLAG_MORE:
                    return
                data = b''.join(self.parts)
                self.parts = []
            if binary:
                self.inbox.append(({'type': 'websocket.receive', 'bytes': data}, len(data)))
            else:
                self.inbox.append(({'type': 'websocket.receive', 'text': data.decode('utf-8', 'replace')}, len(data)))
            self.queued += len(data)
            if len(self.inbox) > _WS_MAX_UNREAD or (self.queued > _WS_MAX_UNREAD_BYTES and len(self.inbox) > 1):
                # A client outrunning an app that does not read: bound the memory, close
                # with 1008 (the app still gets what was queued, then the disconnect).
                self.overflow = True
                if self.state == 'accepted' and not self.over:
                    self.state = 'closed'
                    self.chan.write(encode_ws_close(WS_CLOSE, 1008, 'too many unread messages'))
        elif ftype == WS_DISCONNECT:
            code, reason = decode_ws_close(payload)
            self._gone(code, reason)
        elif ftype == CANCEL:
            self._gone(_WS_GONE, '')
        else:
            raise ProtocolError('frame type 0x%02x during a WebSocket' % ftype)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _gone(self, code, reason):
        """The client closed or left: the exchange ends now, the app gets the disconnect."""
        if self.close_code is None:
            self.close_code = code
            self.inbox.append(({'type': 'websocket.disconnect', 'code': code, 'reason': reason}, 0))
        self._end(END_FRAME)

    async def receive(self):
        if not self.connected:
            self.connected = True
            return {'type': 'websocket.connect'}
        while not self.inbox:
            if self.close_code is not None:
                return {'type': 'websocket.disconnect', 'code': self.close_code, 'reason': ''}
            self.waiter = self.chan.loop.create_future()
            await self.waiter
        message, size = self.inbox.popleft()
        self.queued -= size
        return message

    async def send(self, message):
        kind = message['type']
        if kind == 'websocket.send':
            if self.state != 'accepted':
                raise RuntimeError('websocket.send in state %s' % self.state)
            if self.over:
                raise ClientDisconnected('the WebSocket client went away (code %s)' % self.close_code)
            text = message.get('text')
            if text is not None:
                self.chan.write(encode_ws_message(False, text.encode('utf-8')))
            else:
                self.chan.write(encode_ws_message(True, bytes(message.get('bytes') or b'')))
            await self.chan.drain()
        elif kind == 'websocket.accept':
            if self.state != 'connecting':
                raise RuntimeError('websocket.accept in state %s' % self.state)
            self.state = 'accepted'
            pairs = [(bytes(n).decode('latin-1'), bytes(v).decode('latin-1'))
                     for n, v in message.get('headers', ())]
            parts = [message.get('subprotocol') or ''] + [s for pair in pairs for s in pair]
            self.chan.write(encode_frame(WS_ACCEPT, '\0'.join(parts).encode('latin-1')))
        elif kind == 'websocket.close':
            if self.state not in ('connecting', 'accepted'):
                raise RuntimeError('websocket.close in state %s' % self.state)
            self.state = 'closed'
            if not self.over:
                code = int(message.get('code') or 1000)
                self.chan.write(encode_ws_close(WS_CLOSE, code, message.get('reason') or ''))
        elif kind == 'websocket.http.response.start':
            if self.state != 'connecting':
                raise RuntimeError('websocket.http.response.start after the handshake')
            self.state = 'denying'
            self.denial = _Denial(self)
            await self.denial.send(dict(message, type='http.response.start'))
        elif kind == 'websocket.http.response.body':
            if self.state != 'denying':
                raise RuntimeError('websocket.http.response.body without its start')
            await self.denial.send(dict(message, type='http.response.body'))
        else:
            raise RuntimeError('unexpected ASGI message %r' % kind)

    async def run(self):
        try:
            await self.chan.worker.app(self.scope, self.receive, self.send)
        except Exception:
            self._raised()
            return
        if self.state == 'connecting':
            self._end(encode_error('the ASGI app returned without accepting or closing the WebSocket'))
        elif self.state == 'denying' and not self.denial.started:
            self._end(encode_error('the ASGI app returned in the middle of a denial response'))
        else:
            self._end(END_FRAME)


class _Denial(AsgiHTTP):
    """The HTTP response refusing a WebSocket (the websocket.http.response extension): its
    end is the WebSocket exchange's end."""

    __slots__ = ('parent',)

    def __init__(self, parent):
        AsgiHTTP.__init__(self, parent.chan, None, 0, b'')
        self.parent = parent
        self.running = True

    def _end(self, frame=None):
        if not self.over:
            self.over = True
            self.parent._end(frame)
