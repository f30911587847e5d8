"""An ASGI worker's channel: an asyncio protocol that parses Caddy's frames and hands
each to the exchange it belongs to (HTTP or WebSocket), one exchange running at a time."""

import asyncio
import collections
import socket

from ..codec import CANCEL, FLAG_WEBSOCKET, REQUEST, ProtocolError, decode_request
from ..process import violation
from ..transport import CAN_SEND_FDS, inbound_head, send_with_fd
from .http import AsgiHTTP
from .websocket import AsgiWebSocket


class AsgiChannel:
    """One channel as an asyncio protocol. Caddy sends a REQUEST, then DATA, CANCEL and
    WebSocket frames of that exchange; a REQUEST may be queued behind a running one
    (pipelining), and a CANCEL refers to the latest REQUEST before it (PROTOCOL.md)."""

    def __init__(self, worker):
        self.worker = worker
        self.loop = worker.loop
        self.buf = bytearray()
        self.transport = None
        self.queue = collections.deque()  # exchanges in order; the first one runs
        self.latest = None
        self.paused = None  # a future while the transport's buffer is full

    # asyncio protocol callbacks
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buf = self.buf
        buf += data
        while len(buf) >= 5:
            length, ftype = inbound_head(buf, 0)
            end = 5 + length
            if len(buf) < end:
                return
            payload = bytes(buf[5:end])
            del buf[:end]
            self.frame(ftype, payload)

    def eof_received(self):
        self.worker.stop()
        return True

    def connection_lost(self, exc):
        self.worker.stop()

    def pause_writing(self):
        self.paused = self.loop.create_future()

    def resume_writing(self):
        paused, self.paused = self.paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    # used by exchanges
    def write(self, data):
        self.transport.write(data)

    async def drain(self):
        if self.paused is not None:
            await asyncio.shield(self.paused)

    def send_fd(self, frame, fd):
        """Write a FILE frame with fd attached (SCM_RIGHTS) straight on the socket, which
        the transport cannot do. Only when the transport has nothing queued, so frames
        stay in order; False means the caller sends the bytes instead."""
        if not CAN_SEND_FDS or self.transport.get_write_buffer_size():
            return False
        raw = self.transport.get_extra_info('socket')
        if raw is None:
            return False
        sock = socket.socket(fileno=raw.fileno())
        try:
            sent = send_with_fd(sock, frame, fd)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.worker.peer_gone()
        finally:
            sock.detach()  # the transport owns the descriptor
        if sent < len(frame):
            self.transport.write(frame[sent:])
        return True

    def frame(self, ftype, payload):
        if ftype == REQUEST:
            try:
                flags, parts, body = decode_request(payload)
            except ProtocolError as e:
                violation(e)
            kind = AsgiWebSocket if flags & FLAG_WEBSOCKET else AsgiHTTP
            ex = self.latest = kind(self, parts, flags, body)
            self.queue.append(ex)
            if len(self.queue) == 1:
                ex.running = True
                self.loop.create_task(ex.run())
            return
        ex = self.latest if ftype == CANCEL else (self.queue[0] if self.queue else None)
        if ex is not None and not ex.over:
            try:
                ex.on_frame(ftype, payload)
            except ProtocolError as e:
                violation(e)
        # else: a frame for an exchange that is over; PROTOCOL.md says to ignore it

    def ended(self):
        """The running exchange wrote its last frame: start the one pipelined behind it."""
        self.queue.popleft()
        if self.queue:
            ex = self.queue[0]
            ex.running = True
            self.loop.create_task(ex.run())
