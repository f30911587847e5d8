"""The worker's side of a channel socket: the one place frames from Caddy are parsed
(inbound_head), the one send_fd, and the blocking channel the sync and gevent workers
serve (receive buffer, READ/DATA round trips, scatter sends)."""

import array
import mmap
import os
import socket

from .codec import (
    CANCEL, DATA, DATA_RING, FLAG_FINAL, HEAD, INBOUND_TYPES, MAX_HEADER_BLOCK, MAX_PAYLOAD, REQUEST,
    BODY, END_FRAME, ProtocolError, check_header, decode_data_ring, decode_data_view, encode_body,
    encode_log,
    encode_read, encode_ring, encode_ring_body, frame_head, headers_prefix)
from .process import violation

_RECV_BUFFER = 256 * 1024
_SENDMSG_MIN = 32768  # below this, one copy into a single buffer beats a scatter send
_SCM_RIGHTS = getattr(socket, 'SCM_RIGHTS', None)
CAN_SEND_FDS = _SCM_RIGHTS is not None

# The ring (PROTOCOL.md): body blocks of at least _RING_MIN bytes are copied into shared
# memory and announced with a 10-byte RING_BODY frame, so they cross to Caddy with one copy
# instead of three and never fill the socket (below _RING_MIN the socket's one copy is as
# cheap); Caddy answers READs by reading the client's bytes into its inbound area. A channel
# makes its ring on its first large block or its first READ.
_RING_SLOTS = 32
_RING_SLOT = 64 * 1024
_RING_CONTROL = 4096  # one u32 state word per slot, then the slots
_RING_INBOUND = 256 * 1024  # then where Caddy reads request body bytes (its largest DATA)
_RING_INBOUND_AT = _RING_CONTROL + _RING_SLOTS * _RING_SLOT
_RING_MIN = 16 * 1024
HAVE_RING = hasattr(os, 'memfd_create') and CAN_SEND_FDS


class ClientDisconnected(OSError):
    """The client went away (or its upload failed) while the app was reading or writing."""


def inbound_head(buf, pos):
    """The (length, type) of the header Caddy sent at buf[pos:]; a header the protocol does
    not allow a worker to receive ends the worker. The common case costs one check."""
    length, ftype = HEAD.unpack_from(buf, pos)
    if ftype not in INBOUND_TYPES or length > MAX_PAYLOAD or (ftype == CANCEL and length):
        try:
            check_header(length, ftype)
        except ProtocolError as e:
            violation(e)
        violation('frame type 0x%02x is not sent to workers' % ftype)
    return length, ftype


def send_with_fd(sock, frame, fd):
    """sendmsg of `frame` with `fd` attached to its first byte (SCM_RIGHTS) -> bytes sent."""
    return sock.sendmsg([frame], [(socket.SOL_SOCKET, _SCM_RIGHTS, array.array('i', [fd]))])


class BlockingChannel:
    """One channel socket in blocking mode, used by one thread (or greenlet) at a time."""

    def __init__(self, sock, peer_gone, ring=False):
        self.sock = sock
        self.peer_gone = peer_gone  # Caddy closed the channel: the worker's exit
        self.buf = bytearray(_RECV_BUFFER)
        self.view = memoryview(self.buf)
        self.start = 0  # buffered, unparsed bytes are buf[start:end]
        self.end = 0
        self.cancelled = False
        self.ring_ok = ring and HAVE_RING  # Caddy maps rings, and this system has memfd
        self.ring = None  # memoryview of the mapped ring, once made
        self.ring_state = None  # its state words: non-zero while Caddy holds the slot
        self.ring_next = 0

    # -- receiving -------------------------------------------------------------------

    def _fill(self, need):
        """Block until `need` (<= buffer size) bytes are buffered."""
        if self.start + need > len(self.buf):
            n = self.end - self.start
            self.buf[:n] = bytes(self.view[self.start:self.end])  # regions may overlap
            self.start, self.end = 0, n
        recv_into = self.sock.recv_into
        while self.end - self.start < need:
            try:
                n = recv_into(self.view[self.end:])
            except OSError:
                self.peer_gone()
            if not n:
                self.peer_gone()
            self.end += n

    def recv_frame(self):
        """Block for the next frame -> (type, payload memoryview valid until the next recv)."""
        if self.end - self.start < 5:
            self._fill(5)
        length, ftype = inbound_head(self.buf, self.start)
        size = 5 + length
        if self.end - self.start < size:
            if size > len(self.buf):
                return ftype, self._recv_big(length)
            self._fill(size)
        s = self.start + 5
        e = self.start = s + length
        if e == self.end:
            self.start = self.end = 0
        return ftype, self.view[s:e]

    def _recv_big(self, length):
        """A payload larger than the reusable buffer gets its own."""
        payload = memoryview(bytearray(length))
        have = self.end - self.start - 5
        payload[:have] = self.view[self.start + 5:self.end]
        self.start = self.end = 0
        while have < length:
            try:
                n = self.sock.recv_into(payload[have:])
            except OSError:
                self.peer_gone()
            if not n:
                self.peer_gone()
            have += n
        return payload

    def poll_cancel(self):
        """True once Caddy has sent CANCEL for the current exchange; never blocks."""
        while not self.cancelled:
            if self.end - self.start >= 5:
                length, ftype = HEAD.unpack_from(self.buf, self.start)
                if ftype == REQUEST:
                    # Caddy pipelined the next request: it stays buffered for the serve
                    # loop, and a CANCEL after it belongs to it, not to this exchange.
                    return False
                if ftype != CANCEL or length:
                    violation('frame type 0x%02x (length %d) while sending a response'
                              % (ftype, length))
                self.start += 5
                if self.start == self.end:
                    self.start = self.end = 0
                self.cancelled = True
            elif not self._recv_nowait():
                return False
        return True

    def _recv_nowait(self):
        if self.end == len(self.buf):  # only a partial header is buffered: move it down
            n = self.end - self.start
            self.buf[:n] = bytes(self.view[self.start:self.end])
            self.start, self.end = 0, n
        try:
            n = self.sock.recv_into(self.view[self.end:], 0, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.peer_gone()
        if not n:
            self.peer_gone()
        self.end += n
        return True

    def read_body(self, n):
        """One READ/DATA round trip for wsgi.input -> (flags, a view of the bytes, valid
        until the next receive or READ: the caller copies it once, into its own buffer).
        With a ring, Caddy reads the bytes straight into its inbound area (DATA_RING)."""
        if self.cancelled:
            # Caddy is only draining this exchange; do not ask it for more body.
            raise ClientDisconnected('the client went away')
        if self.ring is None and self.ring_ok:
            self._make_ring()
        self.send(encode_read(n))
        while True:
            ftype, payload = self.recv_frame()
            if ftype == DATA or ftype == DATA_RING:
                break
            if ftype == CANCEL:
                self.cancelled = True  # the DATA answering our READ still comes
            else:
                violation('REQUEST while the previous one is in flight')
        try:
            if ftype == DATA_RING:
                flags, data = self._ring_data(payload)
            else:
                flags, data = decode_data_view(payload)
        except ProtocolError as e:
            violation(e)
        if len(data) > n:
            violation('DATA of %d bytes answers a READ of %d' % (len(data), n))
        return flags, data

    # -- sending ---------------------------------------------------------------------

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            self.peer_gone()

    def _send_parts(self, head, payload):
        """Send head + payload without concatenating them (payload is large)."""
        try:
            sent = self.sock.sendmsg([head, payload])
            if sent < len(head):
                self.sock.sendall(head[sent:])
                sent = len(head)
            if sent - len(head) < len(payload):
                self.sock.sendall(memoryview(payload)[sent - len(head):])
        except OSError:
            self.peer_gone()

    def send_headers(self, flags, block, body):
        room = MAX_HEADER_BLOCK - len(block)  # wsgi_header_block() keeps this >= 0
        if len(body) >= _RING_MIN and self.ring_ok:
            if flags & FLAG_FINAL:
                # The whole body, but no longer in HEADERS: the length Caddy would have
                # derived from it (so no chunking) is stated instead.
                if not any(name.lower() == b'content-length' for name in block.split(b'\0')[1::2]):
                    block += b'\0Content-Length\0%d' % len(body)
                tail = END_FRAME
            else:
                tail = b''
            self._send_ring(body, headers_prefix(0, block, 0), tail)
        elif len(body) > room:
            # Too big for one frame: the rest follows as BODY frames and END closes it.
            body = memoryview(body)
            self._send_parts(headers_prefix(0, block, room), body[:room])
            self.send_body(body[room:])
            if flags & FLAG_FINAL:
                self.send(END_FRAME)
        elif len(body) < _SENDMSG_MIN:
            self.send(headers_prefix(flags, block, len(body)) + body)
        else:
            self._send_parts(headers_prefix(flags, block, len(body)), body)

    def send_body(self, data):
        if len(data) >= _RING_MIN and self.ring_ok:
            self._send_ring(data, b'', b'')
        else:
            self._send_body(data)

    def _send_body(self, data):
        n = len(data)
        if n < _SENDMSG_MIN:
            self.send(encode_body(data))
        elif n <= MAX_PAYLOAD:
            self._send_parts(frame_head(BODY, n), data)
        else:
            view = memoryview(data)
            for i in range(0, n, MAX_PAYLOAD):
                self._send_body(view[i:i + MAX_PAYLOAD])

    # -- the response ring -------------------------------------------------------------

    def _send_ring(self, data, head, tail):
        """Send head, data and tail, the data through the ring's free slots: one send for
        all the frames. What finds no free slot (Caddy still holds them for slow clients)
        goes through the socket, so a worker never waits for a slot."""
        ring = self.ring
        if ring is None:
            ring = self._make_ring()
            if ring is None:
                if head:
                    self.send(head)
                self._send_body(data)
                if tail:
                    self.send(tail)
                return
        state = self.ring_state
        view = data if type(data) is memoryview else memoryview(data)
        n = len(view)
        frames = [head]
        pos = 0
        i = self.ring_next
        while pos < n:
            for _ in range(_RING_SLOTS):
                if not state[i]:
                    break
                i = i + 1 if i + 1 < _RING_SLOTS else 0
            else:
                break  # every slot is held
            m = min(n - pos, _RING_SLOT)
            off = _RING_CONTROL + i * _RING_SLOT
            ring[off:off + m] = view[pos:pos + m]
            state[i] = 1  # before the frame: Caddy checks the slot was filled
            frames.append(encode_ring_body(i, m))
            pos += m
            i = i + 1 if i + 1 < _RING_SLOTS else 0
        self.ring_next = i
        if pos == n:
            frames.append(tail)
            self.send(b''.join(frames))
            return
        if pos or head:
            self.send(b''.join(frames))
        self._send_body(view[pos:])
        if tail:
            self.send(tail)

    def _ring_data(self, payload):
        """A DATA_RING -> (flags, a view of the inbound area's bytes, valid until the next READ)."""
        flags, n = decode_data_ring(payload)
        if self.ring is None or n > _RING_INBOUND:
            raise ProtocolError('DATA_RING of %d bytes without a ring or past its inbound area' % n)
        return flags, self.ring[_RING_INBOUND_AT:_RING_INBOUND_AT + n]

    def _make_ring(self):
        """Create the ring and hand it to Caddy -> its memoryview, or None (no memory or
        descriptors left: this channel then uses the socket only)."""
        size = _RING_INBOUND_AT + _RING_INBOUND
        try:
            fd = os.memfd_create('caddy-wsgi-ring', os.MFD_CLOEXEC)
        except OSError:
            self.ring_ok = False
            return None
        try:
            os.ftruncate(fd, size)
            ring = memoryview(mmap.mmap(fd, size))
        except (OSError, ValueError):
            os.close(fd)
            self.ring_ok = False
            return None
        try:
            self.send_fd(encode_ring(_RING_SLOTS, _RING_SLOT, _RING_INBOUND), fd)
        finally:
            os.close(fd)  # Caddy has its own; the mapping keeps the memory
        self.ring = ring
        self.ring_state = ring[:4 * _RING_SLOTS].cast('I')
        return ring

    def send_fd(self, frame, fd):
        """Send a frame with `fd` attached to its first byte (SCM_RIGHTS)."""
        try:
            sent = send_with_fd(self.sock, frame, fd)
            if sent < len(frame):
                self.sock.sendall(frame[sent:])
        except OSError:
            self.peer_gone()

    def log(self, level, text):
        self.send(encode_log(level, text))
