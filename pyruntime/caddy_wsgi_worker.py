"""caddy-wsgi worker runtime: serves one WSGI app to Caddy over inherited socketpairs.

Caddy starts this file as

    <python> -c <bootstrap> caddy-wsgi-worker <app spec> <config JSON>

with the source on standard input, so importing it must only define things; `main(argv)`
does the work. The wire protocol is specified in PROTOCOL.md at the repository root. Stdlib
only, Python 3.9+.

Layout: the frame codec (pure functions, shared with the tests), the WSGI objects
(wsgi.input stream, FileWrapper, per-request start_response/write), the per-channel serve
loop, and boot (app loading, threads, READY).
"""

import array
import ast
import collections
import importlib
import io
from http import HTTPStatus
import json
import os
import re
import socket
import stat
import struct
import sys
import threading
import time
import traceback

# ---------------------------------------------------------------------------------------
# Frame codec
# ---------------------------------------------------------------------------------------

MAX_PAYLOAD = 16 * 1024 * 1024

# Caddy -> worker
REQUEST = 0x01
DATA = 0x02
CANCEL = 0x03
WS_RECEIVE = 0x04  # ASGI WebSocket: a client message (u8 flags, data)
WS_DISCONNECT = 0x05  # ASGI WebSocket: the client closed (u16 code, UTF-8 reason)
# Worker -> Caddy
HEADERS = 0x10
BODY = 0x11
FILE = 0x12
END = 0x13
READ = 0x14
ERROR = 0x15
LOG = 0x16
WS_ACCEPT = 0x17  # ASGI WebSocket: accept (block: subprotocol, then header pairs)
WS_SEND = 0x18  # ASGI WebSocket: a message for the client (u8 flags, data)
WS_CLOSE = 0x19  # ASGI WebSocket: close (u16 code, UTF-8 reason)
TRAILERS = 0x1A  # ASGI http.response.trailers (block of header pairs)
INFORMATIONAL = 0x1F  # a 1xx (103 Early Hints) before the response (block: code, pairs)
# Boot, worker -> Caddy, channel 0
READY = 0x20
BOOT_ERROR = 0x21
# Zygote control channel (preload)
FORK = 0x30  # Caddy -> zygote: u8 fd count, the fds in SCM_RIGHTS
FORKED = 0x31  # zygote -> Caddy: u32 pid
EXITED = 0x32  # zygote -> Caddy: u32 pid, i32 wait status

FRAME_TYPES = frozenset(
    (REQUEST, DATA, CANCEL, WS_RECEIVE, WS_DISCONNECT, HEADERS, BODY, FILE, END, READ, ERROR,
     LOG, WS_ACCEPT, WS_SEND, WS_CLOSE, TRAILERS, READY, BOOT_ERROR, INFORMATIONAL))
# Frames a worker may receive; anything else from Caddy is a protocol violation.
INBOUND_TYPES = frozenset((REQUEST, DATA, CANCEL, WS_RECEIVE, WS_DISCONNECT))
# Payload sizes fixed by the protocol, checked on the header so that a bogus length is
# refused before its payload is read.
_FIXED_LENGTH = {CANCEL: 0, END: 0, READ: 4, FILE: 16}

FLAG_STREAM = 0x01  # REQUEST: the body is pulled with READ
FLAG_WEBSOCKET = 0x02  # REQUEST: a WebSocket handshake (ASGI workers only)
FLAG_BINARY = 0x01  # WS_RECEIVE/WS_SEND: bytes, not text
FLAG_MORE = 0x02  # WS_RECEIVE/WS_SEND: the message goes on in the next frame
FLAG_EOF = 0x01  # DATA: no body after these bytes
FLAG_ABORTED = 0x02  # DATA: the upload failed or the client left
FLAG_FINAL = 0x01  # HEADERS: the bytes after the block are the whole body

LOG_INFO, LOG_WARNING, LOG_ERROR = 0, 1, 2

_HEAD = struct.Struct('>IB')  # payload length, type
_HEAD_FLAGS_U32 = struct.Struct('>IBBI')  # REQUEST/HEADERS head: + flags, u32 E/H
_HEAD_FLAGS = struct.Struct('>IBB')  # DATA/LOG head: + flags/level
_FLAGS_U32 = struct.Struct('>BI')
_U32 = struct.Struct('>I')
_HEAD_U32 = struct.Struct('>IBI')  # READ frame
_FILE_PAYLOAD = struct.Struct('>Qq')
_HEAD_FILE = struct.Struct('>IBQq')


class ProtocolError(Exception):
    """The peer sent something the protocol does not allow."""


def frame_head(ftype, length):
    """The 5-byte frame header."""
    return _HEAD.pack(length, ftype)


def encode_frame(ftype, payload=b''):
    if len(payload) > MAX_PAYLOAD:
        raise ValueError('frame payload over 16 MiB')
    return _HEAD.pack(len(payload), ftype) + payload


def encode_request(flags, environ, body=b''):
    """REQUEST from a mapping or a list of (key, value) str pairs (the Caddy side)."""
    items = environ.items() if hasattr(environ, 'items') else environ
    env = '\0'.join(s for pair in items for s in pair).encode('latin-1')
    return _HEAD_FLAGS_U32.pack(5 + len(env) + len(body), REQUEST, flags, len(env)) + env + body


def encode_data(flags, data=b''):
    return _HEAD_FLAGS.pack(1 + len(data), DATA, flags) + data


def encode_cancel():
    return _HEAD.pack(0, CANCEL)


def encode_read(n):
    return _HEAD_U32.pack(4, READ, n)


def headers_prefix(flags, block, body_len):
    """Everything of a HEADERS frame but its body, so big bodies can be sent uncopied."""
    return _HEAD_FLAGS_U32.pack(5 + len(block) + body_len, HEADERS, flags, len(block)) + block


def encode_headers(flags, block, body=b''):
    return headers_prefix(flags, block, len(body)) + body


def encode_body(data):
    return _HEAD.pack(len(data), BODY) + data


def encode_file(offset, count):
    return _HEAD_FILE.pack(16, FILE, offset, count)


def encode_end():
    return _HEAD.pack(0, END)


def _utf8(text, limit):
    """UTF-8 for a text payload, never failing, cut at `limit` bytes on a character edge."""
    data = text.encode('utf-8', 'backslashreplace')
    if len(data) > limit:
        data = data[:limit].decode('utf-8', 'ignore').encode('utf-8')
    return data


def encode_error(text):
    return encode_frame(ERROR, _utf8(text, MAX_PAYLOAD))


def encode_log(level, text):
    data = _utf8(text, MAX_PAYLOAD - 1)
    return _HEAD_FLAGS.pack(1 + len(data), LOG, level) + data


def encode_ready(pid, python):
    return encode_frame(READY, json.dumps({'pid': pid, 'python': python}).encode('ascii'))


def encode_boot_error(text):
    return encode_frame(BOOT_ERROR, _utf8(text, MAX_PAYLOAD))


def check_header(length, ftype):
    """Validate a frame header before its payload is read."""
    if ftype not in FRAME_TYPES:
        raise ProtocolError('unknown frame type 0x%02x' % ftype)
    if length > MAX_PAYLOAD:
        raise ProtocolError('frame length %d over the 16 MiB limit' % length)
    fixed = _FIXED_LENGTH.get(ftype)
    if fixed is not None and length != fixed:
        raise ProtocolError('frame type 0x%02x needs a %d-byte payload, got %d'
                            % (ftype, fixed, length))


def decode_request(p):
    """REQUEST payload -> (flags, [key, value, key, value, ...], body bytes).

    `p` may be a memoryview into the receive buffer: everything returned is copied out.
    """
    if len(p) < 5:
        raise ProtocolError('REQUEST payload shorter than 5 bytes')
    flags, env_len = _FLAGS_U32.unpack_from(p)
    if flags & ~(FLAG_STREAM | FLAG_WEBSOCKET):
        raise ProtocolError('REQUEST has unknown flags 0x%02x' % flags)
    end = 5 + env_len
    if end > len(p):
        raise ProtocolError('REQUEST environ length %d past the payload' % env_len)
    parts = str(p[5:end], 'latin-1').split('\0') if env_len else []
    if len(parts) & 1:
        raise ProtocolError('REQUEST environ has a key without a value')
    body = bytes(p[end:])
    if flags & FLAG_STREAM and body:
        raise ProtocolError('REQUEST with STREAM carries body bytes')
    return flags, parts, body


def decode_data(p):
    """DATA payload -> (flags, bytes)."""
    flags, data = decode_data_view(p)
    return flags, bytes(data)


def decode_data_view(p):
    """DATA payload -> (flags, a view of the bytes): no copy, valid while `p` is."""
    if not len(p):
        raise ProtocolError('empty DATA payload')
    flags = p[0]
    if flags & ~(FLAG_EOF | FLAG_ABORTED):
        raise ProtocolError('DATA has unknown flags 0x%02x' % flags)
    if flags & FLAG_ABORTED and len(p) > 1:
        raise ProtocolError('DATA with ABORTED carries bytes')
    if not flags and len(p) == 1:
        raise ProtocolError('DATA without EOF carries no bytes')
    return flags, p[1:]


def _decode_ws_message(p):
    """WS_RECEIVE/WS_SEND payload -> (binary, bytes)."""
    if not len(p):
        raise ProtocolError('empty WebSocket message payload')
    if p[0] & ~(FLAG_BINARY | FLAG_MORE):
        raise ProtocolError('WebSocket message has unknown flags 0x%02x' % p[0])
    return bool(p[0] & FLAG_BINARY), bytes(p[1:])


def decode_ws_close(p):
    """WS_DISCONNECT/WS_CLOSE payload -> (code, reason)."""
    if len(p) < 2:
        raise ProtocolError('WebSocket close payload shorter than 2 bytes')
    return (p[0] << 8 | p[1],) + _decode_text(p[2:])


def _decode_block(p):
    """WS_ACCEPT/TRAILERS payload -> (first, [(name, value), ...])."""
    parts = str(p, 'latin-1').split('\0')
    if not len(parts) & 1:
        raise ProtocolError('header block has a name without a value')
    it = iter(parts[1:])
    return parts[0], list(zip(it, it))


def encode_ws_message(binary, data):
    flags = FLAG_BINARY if binary else 0
    if len(data) < MAX_PAYLOAD:
        return _HEAD_FLAGS.pack(1 + len(data), WS_SEND, flags) + data
    # Over one frame: parts with MORE, text cut between characters (each part is UTF-8).
    parts, start = [], 0
    while len(data) - start >= MAX_PAYLOAD:
        cut = start + MAX_PAYLOAD - 1
        while not binary and data[cut] & 0xC0 == 0x80:
            cut -= 1
        parts.append(_HEAD_FLAGS.pack(1 + cut - start, WS_SEND, flags | FLAG_MORE) + data[start:cut])
        start = cut
    parts.append(_HEAD_FLAGS.pack(1 + len(data) - start, WS_SEND, flags) + data[start:])
    return b''.join(parts)


def encode_ws_close(ftype, code, reason):
    return encode_frame(ftype, bytes((code >> 8 & 0xFF, code & 0xFF)) + _utf8(reason, 123))


def _decode_empty(p):
    return ()


def _decode_read(p):
    (n,) = _U32.unpack(p)
    if n < 1:
        raise ProtocolError('READ of 0 bytes')
    return (n,)


def _decode_headers(p):
    """HEADERS payload -> (flags, status, [(name, value), ...], body)."""
    if len(p) < 5:
        raise ProtocolError('HEADERS payload shorter than 5 bytes')
    flags, block_len = _FLAGS_U32.unpack_from(p)
    if flags & ~FLAG_FINAL:
        raise ProtocolError('HEADERS has unknown flags 0x%02x' % flags)
    end = 5 + block_len
    if end > len(p):
        raise ProtocolError('HEADERS block length %d past the payload' % block_len)
    parts = str(p[5:end], 'latin-1').split('\0')
    if not len(parts) & 1:
        raise ProtocolError('HEADERS block has a name without a value')
    it = iter(parts[1:])
    return flags, parts[0], list(zip(it, it)), bytes(p[end:])


def _decode_body(p):
    if not len(p):
        raise ProtocolError('empty BODY')
    return (bytes(p),)


def _decode_file(p):
    offset, count = _FILE_PAYLOAD.unpack(p)
    if count < -1:
        raise ProtocolError('FILE count %d' % count)
    return offset, count


def _decode_text(p):
    try:
        return (bytes(p).decode('utf-8'),)
    except UnicodeDecodeError as e:
        raise ProtocolError('text payload is not UTF-8: %s' % e)


def _decode_log(p):
    if not len(p):
        raise ProtocolError('empty LOG payload')
    if p[0] > LOG_ERROR:
        raise ProtocolError('LOG level %d' % p[0])
    return (p[0],) + _decode_text(p[1:])


def _decode_ready(p):
    try:
        info = json.loads(bytes(p).decode('utf-8'))
    except (ValueError, RecursionError) as e:
        raise ProtocolError('READY is not JSON: %s' % e)
    if (not isinstance(info, dict) or type(info.get('pid')) is not int
            or not isinstance(info.get('python'), str)):
        raise ProtocolError('READY needs {"pid": int, "python": str}')
    return (info,)


_DECODERS = {
    REQUEST: decode_request, DATA: decode_data, CANCEL: _decode_empty,
    HEADERS: _decode_headers, BODY: _decode_body, FILE: _decode_file, END: _decode_empty,
    READ: _decode_read, ERROR: _decode_text, LOG: _decode_log,
    READY: _decode_ready, BOOT_ERROR: _decode_text,
    WS_RECEIVE: _decode_ws_message, WS_DISCONNECT: decode_ws_close,
    WS_ACCEPT: _decode_block, WS_SEND: _decode_ws_message, WS_CLOSE: decode_ws_close,
    TRAILERS: _decode_block, INFORMATIONAL: _decode_block,
}


def decode_payload(ftype, payload):
    """Parse the payload of a frame whose header passed check_header -> tuple of fields."""
    return _DECODERS[ftype](payload)


def decode_frame(buf, pos=0):
    """Decode the frame at buf[pos:] -> (type, fields, end position).

    `buf` must hold the whole frame: a short buffer is a ProtocolError here (the runtime's
    socket reader waits for more bytes instead).
    """
    if len(buf) - pos < 5:
        raise ProtocolError('truncated frame header')
    length, ftype = _HEAD.unpack_from(buf, pos)
    check_header(length, ftype)
    end = pos + 5 + length
    if end > len(buf):
        raise ProtocolError('truncated frame payload')
    return ftype, decode_payload(ftype, memoryview(buf)[pos + 5:end]), end


# ---------------------------------------------------------------------------------------
# Process-level exits
# ---------------------------------------------------------------------------------------

def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


_exit_hooks = []  # run once before a worker exits on EOF (worker_exit)


def _peer_gone():
    """Caddy closed the channel or died: there is nobody left to serve."""
    while _exit_hooks:
        _exit_hooks.pop()()
    _flush_std()
    os._exit(0)


def _violation(reason):
    """Caddy broke the protocol: the channel can no longer be trusted, so stop the worker."""
    try:
        sys.stderr.write('caddy-wsgi worker %d: protocol violation from Caddy: %s\n'
                         % (os.getpid(), reason))
    except Exception:
        pass
    _flush_std()
    os._exit(4)


# ---------------------------------------------------------------------------------------
# WSGI objects
# ---------------------------------------------------------------------------------------

# Smallest READ, so small reads do not cost a round trip each: 256 KiB (Caddy's largest
# DATA) less the frame head, so a DATA frame lands in the channel's receive buffer.
READ_CHUNK = 256 * 1024 - 6
_READ_ALL_CHUNK = READ_CHUNK  # read(): as large as one DATA frame can be
_MAX_DATA = MAX_PAYLOAD - 1  # DATA carries a flags byte
_SENDMSG_MIN = 32768  # below this, one copy into a single buffer beats a scatter send
_MAX_HEADER_BLOCK = MAX_PAYLOAD - 5  # HEADERS: flags + u32 + block must fit one frame


class ClientDisconnected(OSError):
    """The client went away (or its upload failed) while the app was reading or writing."""


class ResponseError(Exception):
    """The app broke the WSGI response contract; its message goes to Caddy as is."""


class InputStream:
    """wsgi.input for STREAM requests: pulls the body from Caddy with READ/DATA."""

    __slots__ = ('_chan', '_buf', '_eof', '_aborted')

    def __init__(self, chan):
        self._chan = chan
        self._buf = bytearray()
        self._eof = False
        self._aborted = False

    def _pull(self, want):
        """Append at least one more byte to the buffer, or reach EOF."""
        if self._aborted:
            raise ClientDisconnected('the request body was aborted')
        flags, data = self._chan.read_body(min(max(want, READ_CHUNK), _MAX_DATA))
        if flags & FLAG_ABORTED:
            self._aborted = True
            raise ClientDisconnected('the request body was aborted')
        self._buf += data
        if flags & FLAG_EOF:
            self._eof = True

    def read(self, size=-1):
        size = _size_arg(size)
        buf = self._buf
        if size < 0:
            while not self._eof:
                self._pull(_READ_ALL_CHUNK)
            data = bytes(buf)
            buf.clear()
            return data
        while len(buf) < size and not self._eof:
            self._pull(size - len(buf))
        data = bytes(buf[:size])
        del buf[:size]
        return data

    def readline(self, size=-1):
        size = _size_arg(size)
        buf = self._buf
        scanned = 0
        while True:
            i = buf.find(b'\n', scanned)
            if i >= 0:
                end = i + 1
                break
            if self._eof or 0 <= size <= len(buf):
                end = len(buf)
                break
            scanned = len(buf)
            self._pull(READ_CHUNK)
        if 0 <= size < end:
            end = size
        line = bytes(buf[:end])
        del buf[:end]
        return line

    def readlines(self, hint=-1):
        hint = _size_arg(hint)
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _size_arg(size):
    if size is None:
        return -1
    if not isinstance(size, int):
        raise TypeError('size must be an int or None, not %s' % type(size).__name__)
    return size


class FileWrapper:
    """wsgi.file_wrapper. Returned as is, a regular file goes to Caddy as one fd (FILE)."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self):
        read = self.filelike.read
        blksize = self.blksize
        while True:
            data = read(blksize)
            if not data:
                return
            yield data

    def close(self):
        close = getattr(self.filelike, 'close', None)
        if close is not None:
            close()


def _sendable_file(wrapper):
    """(fd, offset) when the wrapped file can be passed to Caddy, else None."""
    filelike = wrapper.filelike
    if isinstance(filelike, io.TextIOBase):
        return None  # tell() is an opaque cookie, and the app wants str semantics anyway
    try:
        fd = filelike.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            # tell() accounts for read-ahead of buffered files; the raw offset does not.
            offset = filelike.tell()
        except (AttributeError, OSError, ValueError):
            offset = os.lseek(fd, 0, os.SEEK_CUR)
    except (AttributeError, OSError, ValueError, TypeError):
        return None
    if type(offset) is not int or offset < 0:
        return None
    return fd, offset


def _header_block(status, headers):
    """The latin-1 HEADERS block, or ResponseError naming what is wrong."""
    if type(headers) is not list:
        raise ResponseError('response headers must be a list, not %s' % type(headers).__name__)
    parts = [status]
    append = parts.append
    try:
        for name, value in headers:
            append(name)
            append(value)
        block = '\0'.join(parts)
        # A NUL inside an item would shift every later name/value on Caddy's side.
        if block.count('\0') == len(parts) - 1:
            data = block.encode('latin-1')
            if len(data) > _MAX_HEADER_BLOCK:
                raise ResponseError('response headers exceed the 16 MiB frame limit')
            return data
    except (TypeError, ValueError):  # not pairs / not str / not latin-1
        pass
    raise ResponseError(_explain_bad_headers(status, headers))


def _explain_bad_headers(status, headers):
    problem = _bad_text(status)
    if problem:
        return 'invalid response status %r: %s' % (status, problem)
    for item in headers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            return 'invalid response header %r: not a (name, value) tuple' % (item,)
        for what, text in zip(('name', 'value'), item):
            problem = _bad_text(text)
            if problem:
                return 'invalid response header %r: %s %s' % (item, what, problem)
    return 'invalid response headers %r' % (headers,)


def _bad_text(text):
    if not isinstance(text, str):
        return 'is %s, not str' % type(text).__name__
    if '\0' in text:
        return 'contains NUL'
    try:
        text.encode('latin-1')
    except UnicodeEncodeError:
        return 'is not latin-1'
    return None


# RFC 9110 field names (tokens) and values (no control characters but HTAB).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FIELD_VALUE = re.compile(r'[^\x00-\x08\x0a-\x1f\x7f]*\Z')


def _informational_block(code, headers):
    """The INFORMATIONAL block for a 1xx with these (name, value) pairs (str or bytes).
    Checked here, as Gunicorn does, so that a bad hint raises in the app."""
    parts = ['%d' % code]
    for name, value in headers:
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).decode('latin-1')
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode('latin-1')
        if type(name) is not str or not _FIELD_NAME.match(name):
            raise ValueError('invalid early hint header name %r' % (name,))
        # The value is not echoed: it may hold what the app would not show a client.
        if type(value) is not str or not _FIELD_VALUE.match(value):
            raise ValueError('invalid value for early hint header %r' % name)
        parts.append(name)
        parts.append(value.strip(' \t'))
    try:
        block = '\0'.join(parts).encode('latin-1')
    except UnicodeEncodeError:
        raise ValueError('early hint headers must be latin-1')
    if len(block) > MAX_PAYLOAD:
        raise ValueError('early hint headers exceed the 16 MiB frame limit')
    return block


class _Response:
    """State of one response: what start_response stored and whether HEADERS went out."""

    __slots__ = ('chan', 'status', 'headers', 'sent')

    def __init__(self, chan):
        self.chan = chan
        self.status = None
        self.headers = None
        self.sent = False

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the frame <-> traceback cycle
        elif self.status is not None:
            raise AssertionError('start_response() called twice without exc_info')
        # Replace, never merge: headers of an error page must not inherit the first call's.
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data):
        if not isinstance(data, bytes):
            raise TypeError('write() argument must be bytes, not %s' % type(data).__name__)
        if data:
            self.send_block(data)
        if self.chan.poll_cancel():
            # Lets an app streaming with write() in a loop stop when the client leaves.
            raise ClientDisconnected('the client went away')

    def header_block(self):
        if self.status is None:
            raise ResponseError('the application did not call start_response()')
        return _header_block(self.status, self.headers)

    def send_block(self, data):
        """Send one non-empty body block; the first one carries the headers."""
        if self.sent:
            self.chan.send_body(data)
        else:
            self.chan.send_headers(0, self.header_block(), data)
            self.sent = True


def _close_result(result):
    """Call result.close() if it has one -> None, or the traceback text if it raised."""
    close = getattr(result, 'close', None)
    if close is None:
        return None
    try:
        close()
    except Exception:
        return traceback.format_exc()
    return None


def _error_text():
    """ERROR text for the exception being handled: our own contract errors need no traceback."""
    exc = sys.exc_info()[1]
    if isinstance(exc, ResponseError):
        return str(exc)
    return traceback.format_exc()


# ---------------------------------------------------------------------------------------
# One channel: receive buffer, sends, serve loop
# ---------------------------------------------------------------------------------------

_RECV_BUFFER = 256 * 1024
_END_FRAME = encode_end()
_SCM_RIGHTS = getattr(socket, 'SCM_RIGHTS', None)


class Channel:
    """Serves one socket, one exchange at a time, on the thread that calls serve()."""

    def __init__(self, sock, app, base_environ):
        self.sock = sock
        self.app = app
        self.base = base_environ
        self.buf = bytearray(_RECV_BUFFER)
        self.view = memoryview(self.buf)
        self.start = 0  # buffered, unparsed bytes are buf[start:end]
        self.end = 0
        self.cancelled = False
        self.pre_request = None  # hooks, when the hooks module defines them
        self.post_request = None
        # Built once per channel, not per request; valid on the serving thread only.
        base_environ['wsgi.early_hints'] = self.early_hints
        self.ident = None

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
                _peer_gone()
            if not n:
                _peer_gone()
            self.end += n

    def recv_frame(self):
        """Block for the next frame -> (type, payload memoryview valid until the next recv)."""
        if self.end - self.start < 5:
            self._fill(5)
        length, ftype = _HEAD.unpack_from(self.buf, self.start)
        try:
            check_header(length, ftype)
        except ProtocolError as e:
            _violation(e)
        if ftype not in INBOUND_TYPES:
            _violation('frame type 0x%02x is not sent to workers' % ftype)
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
                _peer_gone()
            if not n:
                _peer_gone()
            have += n
        return payload

    def poll_cancel(self):
        """True once Caddy has sent CANCEL for the current exchange; never blocks."""
        while not self.cancelled:
            if self.end - self.start >= 5:
                length, ftype = _HEAD.unpack_from(self.buf, self.start)
                if ftype == REQUEST:
                    # Caddy pipelined the next request: it stays buffered for the serve
                    # loop, and a CANCEL after it belongs to it, not to this exchange.
                    return False
                if ftype != CANCEL or length:
                    _violation('frame type 0x%02x (length %d) while sending a response'
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
            _peer_gone()
        if not n:
            _peer_gone()
        self.end += n
        return True

    def read_body(self, n):
        """One READ/DATA round trip for wsgi.input -> (flags, a view of the bytes, valid
        until the next receive: the caller copies it once, into its own buffer)."""
        if self.cancelled:
            # Caddy is only draining this exchange; do not ask it for more body.
            raise ClientDisconnected('the client went away')
        self.send(encode_read(n))
        while True:
            ftype, payload = self.recv_frame()
            if ftype == DATA:
                break
            if ftype == CANCEL:
                self.cancelled = True  # the DATA answering our READ still comes
            else:
                _violation('REQUEST while the previous one is in flight')
        try:
            flags, data = decode_data_view(payload)
        except ProtocolError as e:
            _violation(e)
        if len(data) > n:
            _violation('DATA of %d bytes answers a READ of %d' % (len(data), n))
        return flags, data

    # -- sending ---------------------------------------------------------------------

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            _peer_gone()

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
            _peer_gone()

    def send_headers(self, flags, block, body):
        room = _MAX_HEADER_BLOCK - len(block)  # _header_block() keeps this >= 0
        if len(body) > room:
            # Too big for one frame: the rest follows as BODY frames and END closes it.
            body = memoryview(body)
            self._send_parts(headers_prefix(0, block, room), body[:room])
            self.send_body(body[room:])
            if flags & FLAG_FINAL:
                self.send(_END_FRAME)
        elif len(body) < _SENDMSG_MIN:
            self.send(headers_prefix(flags, block, len(body)) + body)
        else:
            self._send_parts(headers_prefix(flags, block, len(body)), body)

    def send_body(self, data):
        n = len(data)
        if n < _SENDMSG_MIN:
            self.send(encode_body(data))
        elif n <= MAX_PAYLOAD:
            self._send_parts(frame_head(BODY, n), data)
        else:
            view = memoryview(data)
            for i in range(0, n, MAX_PAYLOAD):
                self.send_body(view[i:i + MAX_PAYLOAD])

    def send_fd(self, frame, fd):
        """Send a frame with `fd` attached to its first byte (SCM_RIGHTS)."""
        try:
            sent = self.sock.sendmsg(
                [frame], [(socket.SOL_SOCKET, _SCM_RIGHTS, array.array('i', [fd]))])
            if sent < len(frame):
                self.sock.sendall(frame[sent:])
        except OSError:
            _peer_gone()

    def log(self, level, text):
        self.send(encode_log(level, text))

    def early_hints(self, headers):
        """environ['wsgi.early_hints'], as Gunicorn's: a 103 Early Hints response with
        these (name, value) pairs, ahead of the response. Caddy drops it once the
        response has begun, and for HTTP/1.0 clients."""
        if threading.get_ident() != self.ident:
            # Another thread's send could interleave with this channel's frames.
            raise RuntimeError('wsgi.early_hints called outside the thread of its request')
        self.send(encode_frame(INFORMATIONAL, _informational_block(103, headers)))

    # -- serving ---------------------------------------------------------------------

    def serve(self):
        recv = self.recv_frame
        handle = self.handle
        self.ident = threading.get_ident()
        while True:
            ftype, payload = recv()
            if ftype == REQUEST:
                try:
                    request = decode_request(payload)
                except ProtocolError as e:
                    _violation(e)
                if self.pre_request is None and self.post_request is None:
                    handle(*request)
                else:
                    self.handle_hooked(request)
            # CANCEL or DATA while idle: late news about an exchange that is over.

    def handle_hooked(self, request):
        """handle() with pre_request(environ) before the app and post_request(environ,
        status) after the response went out."""
        self.hooked_env = self.hooked_resp = None
        self.handle(*request)
        if self.post_request is not None and self.hooked_env is not None:
            status = self.hooked_resp.status if self.hooked_resp is not None else None
            _call_hook('post_request', self.post_request, self.hooked_env, status)

    def handle(self, flags, parts, body):
        env = self.base.copy()
        it = iter(parts)
        env.update(zip(it, it))
        env['wsgi.input'] = InputStream(self) if flags & FLAG_STREAM else io.BytesIO(body)
        self.cancelled = False
        resp = _Response(self)
        if self.pre_request is not None or self.post_request is not None:
            self.hooked_env, self.hooked_resp = env, resp
            if self.pre_request is not None:
                _call_hook('pre_request', self.pre_request, env)
        try:
            result = self.app(env, resp.start_response)
        except Exception:
            self.fail(resp, None)
            return
        # Fast path: a list of one bytes becomes a single HEADERS(FINAL) frame.
        if ((type(result) is list or type(result) is tuple) and len(result) == 1
                and type(result[0]) is bytes and not resp.sent and resp.status is not None):
            try:
                block = _header_block(resp.status, resp.headers)
            except ResponseError:
                self.fail(resp, result)
                return
            self.send_headers(FLAG_FINAL, block, result[0])
            return
        self.stream(resp, result)

    def stream(self, resp, result):
        """Send any other response; close() runs before the frame that frees the channel."""
        try:
            if not (isinstance(result, FileWrapper) and self.send_file(resp, result)):
                self.iterate(resp, result)
        except Exception:
            self.fail(resp, result)
            return
        err = _close_result(result)
        if err is not None:
            if not resp.sent:
                self.send(encode_error(err))
                return
            # The body is complete: keep the response, but tell Caddy in this exchange.
            self.log(LOG_WARNING, 'close() of the response iterable raised:\n' + err)
        self.finish(resp)

    def iterate(self, resp, result):
        send_block = resp.send_block
        poll_cancel = self.poll_cancel
        for block in result:
            if type(block) is not bytes and not isinstance(block, bytes):
                raise ResponseError('response body blocks must be bytes, not %s'
                                    % type(block).__name__)
            if block:
                send_block(block)
            if poll_cancel():
                return

    def send_file(self, resp, wrapper):
        """HEADERS + FILE for a wrapped regular file -> False if it must be iterated instead."""
        found = _sendable_file(wrapper)
        if found is None:
            return False
        fd, offset = found
        if not resp.sent:
            self.send_headers(0, resp.header_block(), b'')
            resp.sent = True
        self.send_fd(encode_file(offset, -1), fd)
        return True

    def finish(self, resp):
        """The frame that ends a response that did not fail."""
        if resp.sent:
            self.send(_END_FRAME)
        elif self.cancelled:
            self.send(encode_error('the client went away before the response started'))
        else:
            try:
                block = resp.header_block()
            except ResponseError as e:
                self.send(encode_error(str(e)))
                return
            self.send_headers(FLAG_FINAL, block, b'')

    def fail(self, resp, result):
        """The app raised (or broke the contract): close the iterable, then send ERROR."""
        text = _error_text()
        if result is not None:
            err = _close_result(result)
            if err is not None:
                text += '\nthen close() of the response iterable raised:\n' + err
        self.send(encode_error(text))


# ---------------------------------------------------------------------------------------
# Boot
# ---------------------------------------------------------------------------------------

def load_app(spec):
    """Resolve `module`, `module:attr.path`, `module:factory()` or `module:factory(literals)`."""
    module_name, sep, expr = spec.partition(':')
    if not sep:
        expr = 'application'
    if not module_name or not expr.strip():
        raise ValueError('invalid app spec %r: expected module:callable' % spec)
    try:
        node = ast.parse(expr.strip(), mode='eval').body
    except SyntaxError:
        raise ValueError('invalid app spec %r: cannot parse %r' % (spec, expr))
    call = None
    if isinstance(node, ast.Call):
        call = node
        node = node.func
    path = _dotted(node, spec)
    args, kwargs = _literal_args(call, spec) if call is not None else (None, None)
    obj = importlib.import_module(module_name)
    for i, name in enumerate(path):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AttributeError('app spec %r: %s has no attribute %r'
                                 % (spec, '.'.join([module_name] + path[:i]), name))
    if args is not None:
        obj = obj(*args, **kwargs)
    if not callable(obj):
        raise TypeError('app spec %r resolved to %r, which is not callable' % (spec, obj))
    return obj


def _dotted(node, spec):
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ValueError('invalid app spec %r: expected a dotted name' % spec)
    names.append(node.id)
    return names[::-1]


def _literal_args(call, spec):
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {}
        for kw in call.keywords:
            if kw.arg is None:
                raise ValueError('**kwargs')
            kwargs[kw.arg] = ast.literal_eval(kw.value)
    except ValueError:
        raise ValueError('invalid app spec %r: factory arguments must be literals' % spec)
    return args, kwargs


def _base_environ(config):
    """The constant part of every environ, built once per thread."""
    return {
        'wsgi.version': (1, 0),
        'wsgi.errors': sys.stderr,
        'wsgi.multithread': config['threads'] > 1,
        'wsgi.multiprocess': config['multiprocess'],
        'wsgi.run_once': False,
        'wsgi.input_terminated': True,
        'wsgi.file_wrapper': FileWrapper,
        'SERVER_SOFTWARE': config['server_software'],
    }


def _parse_config(text):
    config = json.loads(text)
    if not isinstance(config, dict):
        raise ValueError('config must be a JSON object')
    config = {
        'threads': config.get('threads', 1),
        'multiprocess': config.get('multiprocess', False),
        'server_software': config.get('server_software', 'caddy-wsgi'),
        'pythonpath': config.get('pythonpath') or [],
        'dump_fd': config.get('dump_fd'),
        'hooks': config.get('hooks') or '',
        'worker_class': config.get('worker_class') or 'sync',
        'lifespan': config.get('lifespan') or 'auto',
    }
    if config['lifespan'] not in ('auto', 'on', 'off'):
        raise ValueError('config lifespan must be auto, on or off')
    if config['worker_class'] not in ('sync', 'gevent', 'asgi'):
        raise ValueError('config worker_class must be sync, gevent or asgi')
    if config['dump_fd'] is not None and type(config['dump_fd']) is not int:
        raise ValueError('config dump_fd must be an int')
    if type(config['threads']) is not int or config['threads'] < 1:
        raise ValueError('config threads must be an int >= 1')
    if not isinstance(config['pythonpath'], list) or not all(
            isinstance(p, str) for p in config['pythonpath']):
        raise ValueError('config pythonpath must be a list of str')
    return config


def _serve_forever(chan):
    """Thread body: a crash of the serve loop itself must not leave Caddy waiting."""
    try:
        chan.serve()
    except BaseException:
        try:
            sys.stderr.write('caddy-wsgi worker %d: serve loop crashed:\n%s'
                             % (os.getpid(), traceback.format_exc()))
        except Exception:
            pass
        _flush_std()
        os._exit(1)


def _redirect_stdin():
    fd = os.open(os.devnull, os.O_RDONLY)
    if fd != 0:
        os.dup2(fd, 0)
        os.close(fd)


class WorkerInfo:
    """What hooks receive as `worker` (and as `server` in on_starting)."""

    def __init__(self, spec, config):
        self.app_spec = spec
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self.threads = config['threads']
        self.booted_at = time.time()


def _load_hooks(name):
    if not name:
        return None
    if name.startswith(('python:', 'file:')) or name.endswith('.py') or os.sep in name:
        return _GunicornHooks(name)
    return importlib.import_module(name)


def _hook(hooks, name):
    return getattr(hooks, name, None) if hooks is not None else None


def _call_hook(name, fn, *args):
    """Run a hook; its exception is logged (Caddy merges the traceback into one entry)
    and never breaks the worker or the request."""
    try:
        fn(*args)
    except Exception:
        try:
            sys.stderr.write('caddy-wsgi worker %d: hook %s raised an exception\n%s'
                             % (os.getpid(), name, traceback.format_exc()))
        except Exception:
            pass


def _run_hook(hooks, name, *args):
    fn = _hook(hooks, name)
    if fn is not None:
        _call_hook(name, fn, *args)


class _GunicornHooks:
    """A Gunicorn config file (a path, file:PATH or python:MODULE) as a hooks module: it is
    executed as Gunicorn executes it, and its hooks are called with Gunicorn's signatures
    and objects that have the attributes hooks use (server.log, worker.pid, req.path...)."""

    def __init__(self, spec):
        if spec.startswith('python:'):
            mod = importlib.import_module(spec[len('python:'):])
        else:
            import importlib.machinery
            import importlib.util
            path = spec[len('file:'):] if spec.startswith('file:') else spec
            loader = importlib.machinery.SourceFileLoader('__config__', path)
            mod = importlib.util.module_from_spec(
                importlib.util.spec_from_file_location('__config__', path, loader=loader))
            sys.modules['__config__'] = mod
            loader.exec_module(mod)
        names = vars(mod)
        self._cfg = _GunicornCfg(names)
        self._server = self._worker = None
        fns = {k: names.get(k) for k in ('on_starting', 'post_fork', 'post_worker_init',
                                         'pre_request', 'post_request', 'worker_exit',
                                         'worker_abort')}
        self._fns = {k: v for k, v in fns.items() if callable(v)}
        # Only the hooks the file defines exist here (the worker checks with getattr),
        # but post_worker_init always does: it keeps the worker object for the others.
        for k in self._fns:
            if k not in ('post_worker_init', 'worker_abort'):
                setattr(self, k, getattr(self, '_' + k))
        if 'post_request' in self._fns:
            self._post_request_args = _arity(self._fns['post_request'], 4)

    def _server_for(self, info):
        if self._server is None:
            self._server = _GunicornProcess(info, self._cfg)
        return self._server

    def _worker_for(self, info):
        if self._worker is None or self._worker.pid != os.getpid():
            self._worker = _GunicornProcess(info, self._cfg)
        return self._worker

    def _on_starting(self, info):
        self._fns['on_starting'](self._server_for(info))

    def _post_fork(self, info):
        self._fns['post_fork'](self._server_for(info), self._worker_for(info))

    def post_worker_init(self, info):
        worker = self._worker_for(info)
        if 'worker_abort' in self._fns:
            self._install_abort(worker)
        if 'post_worker_init' in self._fns:
            self._fns['post_worker_init'](worker)

    def _install_abort(self, worker):
        """worker_abort(worker) runs when Caddy times out a request (its SIGUSR1 before the
        kill), after faulthandler wrote the stacks; the worker is killed just after."""
        import faulthandler
        import signal
        fn = self._fns['worker_abort']
        try:
            # faulthandler's C handler stays first (it dumps even when Python is stuck),
            # then chains to this one, which runs at the next bytecode of the main thread.
            if _dump_file is not None:
                faulthandler.unregister(signal.SIGUSR1)
            signal.signal(signal.SIGUSR1, lambda *_: _call_hook('worker_abort', fn, worker))
            if _dump_file is not None:
                faulthandler.register(signal.SIGUSR1, file=_dump_file, all_threads=True, chain=True)
        except (ValueError, OSError):  # not the main thread
            pass

    def _pre_request(self, environ):
        self._fns['pre_request'](self._worker, _GunicornRequest(environ))

    def _post_request(self, environ, status):
        args = (self._worker, _GunicornRequest(environ), environ, _GunicornResponse(status))
        self._fns['post_request'](*args[:self._post_request_args])

    def _worker_exit(self, info):
        self._fns['worker_exit'](self._server_for(info), self._worker_for(info))


def _arity(fn, most):
    """How many positional arguments fn takes, up to most (Gunicorn's post_request takes
    2, 3 or 4)."""
    import inspect
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return most
    n = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return most
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return min(n, most)


class _GunicornCfg:
    """server.cfg / worker.cfg: the config file's settings as attributes; a setting the
    file does not set is None."""

    def __init__(self, names):
        self.__dict__.update((k, v) for k, v in names.items()
                             if not k.startswith('_') and not callable(v))

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return None


class _GunicornProcess:
    """What Gunicorn hooks receive as server and worker."""

    def __init__(self, info, cfg):
        self.pid = info.pid
        self.ppid = info.ppid
        self.app_spec = info.app_spec
        self.threads = info.threads
        self.booted_at = info.booted_at
        self.cfg = cfg
        self.timeout = cfg.timeout
        self.num_workers = cfg.workers
        self.alive = self.booted = True
        self._log = None

    @property
    def log(self):
        """Gunicorn's error log (logger gunicorn.error), written to stderr: Caddy's log."""
        if self._log is None:
            import logging
            log = logging.getLogger('gunicorn.error')
            if not log.handlers:
                h = logging.StreamHandler(sys.stderr)
                h.setFormatter(logging.Formatter('[%(levelname)s] %(message)s'))
                log.addHandler(h)
                log.propagate = False
                level = str(self.cfg.loglevel or 'info').upper()
                log.setLevel({'WARN': 'WARNING', 'CRITICAL': 'CRITICAL'}.get(level, level)
                             if level in ('DEBUG', 'INFO', 'WARNING', 'WARN', 'ERROR', 'CRITICAL')
                             else 'INFO')
            self._log = log
        return self._log


class _GunicornRequest:
    """What Gunicorn's pre_request and post_request receive as req, from the environ."""

    def __init__(self, environ):
        self.environ = environ
        self.method = environ.get('REQUEST_METHOD')
        self.path = environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', '')
        self.query = environ.get('QUERY_STRING', '')
        self.uri = environ.get('RAW_URI') or (self.path + ('?' + self.query if self.query else ''))
        self.scheme = environ.get('wsgi.url_scheme')
        self.remote_addr = environ.get('REMOTE_ADDR')
        self.peer_addr = (self.remote_addr, environ.get('REMOTE_PORT'))
        proto = environ.get('SERVER_PROTOCOL', 'HTTP/1.1')
        try:
            major, _, minor = proto.split('/', 1)[1].partition('.')
            self.version = (int(major), int(minor or 0))
        except (IndexError, ValueError):
            self.version = (1, 1)

    @property
    def headers(self):
        """(NAME, value) pairs, names upper-case as Gunicorn gives them."""
        env = self.environ
        out = [(k[5:].replace('_', '-'), v) for k, v in env.items() if k.startswith('HTTP_')]
        for k in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
            if env.get(k):
                out.append((k.replace('_', '-'), env[k]))
        return out


class _GunicornResponse:
    """What post_request receives as resp: the status."""

    def __init__(self, status):
        self.status = status
        try:
            self.status_code = int(str(status).split(None, 1)[0])
        except (IndexError, ValueError):
            self.status_code = None


def _close_inherited(keep_below, fd_dir='/proc/self/fd'):
    """Close descriptors Caddy's own parent leaked to it without close-on-exec: the app
    must not hold them (a worker running as another user least of all)."""
    try:
        fds = [int(name) for name in os.listdir(fd_dir)]
    except OSError:  # no /proc (macOS, FreeBSD): close the whole range
        os.closerange(keep_below, os.sysconf('SC_OPEN_MAX'))
        return
    for fd in fds:
        if fd >= keep_below:
            try:
                os.close(fd)
            except OSError:
                pass  # the descriptor listdir itself used


def _start_process(argv, mode):
    """Common start of a worker or zygote -> (spec, config, boot socket)."""
    _redirect_stdin()
    if sys.stdout is not None:  # print() lines must reach Caddy's log as they happen
        sys.stdout.reconfigure(line_buffering=True)
    spec, config_text = argv[1], argv[2]
    sys.argv = [mode]
    try:
        boot_sock = socket.socket(fileno=3)
    except OSError as e:
        sys.stderr.write('caddy-wsgi: no channel on fd 3: %s\n' % e)
        os._exit(3)
    try:
        config = _parse_config(config_text)
        sys.path[:0] = [os.getcwd()] + config['pythonpath']
    except BaseException:
        _boot_failed(boot_sock, traceback.format_exc())
    # Ours: fds 3..3+threads-1 (channels) and the dump pipe after them (worker), or fds 3
    # and 4 (zygote).
    _close_inherited(5 if mode == 'caddy-wsgi-zygote' else 3 + config['threads'] + 1)
    if config['worker_class'] != 'sync':
        _raise_nofile()
    if mode == 'caddy-wsgi-worker' and not sys.platform.startswith('linux'):
        _watch_parent()  # a zygote is never busy: EOF on its control channel ends it
    return spec, config, boot_sock


def _watch_parent(interval=1.0, sleep=time.sleep):
    """Where Caddy cannot set a parent-death signal (Pdeathsig is Linux-only), a daemon
    thread ends the worker once its parent is gone, even while the app is busy in a
    request (an idle worker already exits at EOF on its channels). The poll is one
    getppid() a second. `sleep` is taken before gevent patches time.sleep."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name='caddy-wsgi-parent-watch', daemon=True).start()


def _raise_nofile():
    """ASGI and gevent workers hold up to thousands of channels: raise the soft limit on
    open files to the hard one (as Go does for Caddy), so the app can still open files and
    sockets above them. Go restores the original soft limit (often 1024) for children."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            _highest_soft(lambda n: resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard)), soft, hard)
    except (ImportError, ValueError, OSError):
        pass  # keep the limit; Caddy checked that the channels fit in the hard one


def _highest_soft(setlimit, soft, hard):
    """Set the soft limit as high as the system allows up to hard. macOS refuses its own
    "unlimited" hard limit (the cap is kern.maxfilesperproc, which the stdlib cannot
    read): there the highest accepted value is found by bisection, a few dozen calls."""
    try:
        setlimit(hard)
        return hard
    except (ValueError, OSError):
        pass
    lo, hi = soft, min(hard, 1 << 31) if hard >= 0 else 1 << 31  # lo accepted, hi refused
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            setlimit(mid)
            lo = mid
        except (ValueError, OSError):
            hi = mid
    setlimit(lo)
    return lo


def main(argv):
    if len(argv) != 3 or argv[0] not in ('caddy-wsgi-worker', 'caddy-wsgi-zygote'):
        sys.stderr.write('usage: caddy-wsgi-worker|caddy-wsgi-zygote <app spec> <config JSON>\n')
        os._exit(2)
    spec, config, boot_sock = _start_process(argv, argv[0])
    if argv[0] == 'caddy-wsgi-zygote':
        _zygote(spec, config, boot_sock)
        return
    try:
        if config['worker_class'] == 'gevent':
            boot_sock = _patch_gevent(boot_sock)
        socks = [boot_sock] + [socket.socket(fileno=3 + i) for i in range(1, config['threads'])]
        if config['dump_fd'] is not None:
            _install_stack_dump(config['dump_fd'])
        hooks = _load_hooks(config['hooks'])
        info = WorkerInfo(spec, config)
        # Without a zygote every worker is its own "server": it gets every hook.
        _run_hook(hooks, 'on_starting', info)
        _run_hook(hooks, 'post_fork', info)
        app = load_app(spec)
    except BaseException:  # SystemExit from an app import is a boot failure too
        _boot_failed(boot_sock, traceback.format_exc())
    if config['worker_class'] == 'asgi':
        _serve_asgi(socks, app, config, hooks, info)
    else:
        _serve_worker(socks, app, config, hooks, info)


def _patch_gevent(boot_sock):
    """worker_class gevent: patch the stdlib before the app is imported, so each channel
    is served by a greenlet (threading.Thread is patched) and an app that waits on I/O
    yields to the others. The boot channel is re-made as a cooperative socket."""
    from gevent import monkey
    monkey.patch_all()
    return socket.socket(fileno=boot_sock.detach())


def _serve_worker(socks, app, config, hooks, info):
    """Run the serve loops of an imported app; READY goes out on channel 0 first."""
    _run_hook(hooks, 'post_worker_init', info)
    exit_hook = _hook(hooks, 'worker_exit')
    if exit_hook is not None:
        _exit_hooks.append(lambda: _call_hook('worker_exit', exit_hook, info))
    chans = []
    for sock in socks:
        sock.setblocking(True)  # the serve loop relies on blocking sends and receives
        chan = Channel(sock, app, _base_environ(config))
        chan.pre_request = _hook(hooks, 'pre_request')
        chan.post_request = _hook(hooks, 'post_request')
        chans.append(chan)
    for chan in chans[1:]:
        threading.Thread(target=_serve_forever, args=(chan,), daemon=True,
                         name='caddy-wsgi-%d' % chan.sock.fileno()).start()
    python = '%d.%d.%d' % sys.version_info[:3]
    chans[0].send(encode_ready(os.getpid(), python))
    _serve_forever(chans[0])



# ---------------------------------------------------------------------------------------
# ASGI (worker_class asgi): one asyncio loop; every channel is an asyncio protocol whose
# frames go to the exchange they belong to
# ---------------------------------------------------------------------------------------

_ASGI_VERSION = {'version': '3.0', 'spec_version': '2.4'}
_HTTP_DISCONNECT = {'type': 'http.disconnect'}
_PATHSEND_CHUNK = 256 * 1024
_ASGI_HTTP_VERSIONS = {'HTTP/1.0': '1.0', 'HTTP/1.1': '1.1', 'HTTP/2.0': '2', 'HTTP/3.0': '3'}
_WS_GONE = 1006  # the close code when the client vanished without a close frame
# Unread WebSocket messages a worker keeps per connection before it closes it with 1008.
_WS_MAX_UNREAD = 1024
_WS_MAX_UNREAD_BYTES = 16 * 1024 * 1024


class AsgiWorker:
    """What every channel of an ASGI worker shares: the app, the loop, the lifespan."""

    def __init__(self, app, loop):
        self.app = app
        self.loop = loop
        self.lifespan = None  # Lifespan, when the app supports it
        self.state = {}  # lifespan state, copied into every scope
        self.stopping = False

    def stop(self):
        """Caddy closed a channel or sent SIGTERM: run lifespan shutdown, then exit."""
        if self.stopping:
            return
        self.stopping = True
        self.loop.create_task(self._shutdown())

    async def _shutdown(self):
        if self.lifespan is not None:
            try:
                await self.lifespan.shutdown()
            except Exception:
                sys.stderr.write('lifespan shutdown failed:\n' + traceback.format_exc())
        _peer_gone()


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
            length, ftype = _HEAD.unpack_from(buf, 0)
            try:
                check_header(length, ftype)
                if ftype not in INBOUND_TYPES:
                    raise ProtocolError('frame type 0x%02x is not for a worker' % ftype)
            except ProtocolError as e:
                _violation(e)
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
        if _SCM_RIGHTS is None or self.transport.get_write_buffer_size():
            return False
        raw = self.transport.get_extra_info('socket')
        if raw is None:
            return False
        sock = socket.socket(fileno=raw.fileno())
        try:
            sent = sock.sendmsg([frame], [(socket.SOL_SOCKET, _SCM_RIGHTS, array.array('i', [fd]))])
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            _peer_gone()
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
                _violation(e)
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
                _violation(e)
        # else: a frame for an exchange that is over; PROTOCOL.md says to ignore it

    def ended(self):
        """The running exchange wrote its last frame: start the one pipelined behind it."""
        self.queue.popleft()
        if self.queue:
            ex = self.queue[0]
            ex.running = True
            self.loop.create_task(ex.run())


def _asgi_scope(parts, state, websocket):
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
        'asgi': _ASGI_VERSION,
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


_STATUS_LINES = {s.value: ('%d %s' % (s.value, s.phrase)).encode('latin-1') for s in HTTPStatus}


def _asgi_header_block(status, headers):
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


class AsgiHTTP(AsgiExchange):
    """One HTTP request: receive() and send() for the app, frames for Caddy."""

    __slots__ = ('scope', 'stream', 'body', 'body_done', 'disconnected', 'data', 'early',
                 'waiters', 'status', 'headers', 'trailers', 'started', 'finished')

    def __init__(self, chan, parts, flags, body):
        AsgiExchange.__init__(self, chan)
        self.scope = _asgi_scope(parts, chan.worker.state, False) if parts is not None else None
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
        self._end(_END_FRAME if self.started else encode_error('the client went away'))
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
            self.headers = _asgi_header_block(status, message.get('headers', ()))
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
        block = _informational_block(code, headers)
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
            self._end(_END_FRAME)
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
            self._end(_END_FRAME)
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
            self._end(_END_FRAME)
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
            self._end(_END_FRAME)


class AsgiWebSocket(AsgiExchange):
    """One WebSocket: Caddy did the HTTP side of the handshake and relays messages."""

    def __init__(self, chan, parts, flags, body):
        AsgiExchange.__init__(self, chan)
        self.scope = _asgi_scope(parts, chan.worker.state, True)
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
            binary, data = _decode_ws_message(payload)
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
        self._end(_END_FRAME)

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
            self._end(_END_FRAME)


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


class Lifespan:
    """The ASGI lifespan protocol for one worker: startup before READY, shutdown at exit."""

    def __init__(self, app, state, loop):
        self.app = app
        self.loop = loop
        self.state = state
        self.inbox = asyncio.Queue()
        self.answer = None  # future: None (complete) or a message (failed)
        self.task = None
        self.error = None  # the traceback if the app raised
        self.answered = False  # the app sent a lifespan message

    async def _main(self):
        scope = {'type': 'lifespan', 'asgi': _ASGI_VERSION, 'state': self.state}
        try:
            await self.app(scope, self.inbox.get, self._send)
        except BaseException:
            self.error = traceback.format_exc()
        finally:
            if self.answer is not None and not self.answer.done():
                self.answer.set_result(self.error or 'the app returned without answering')

    async def _send(self, message):
        kind = message['type']
        if kind not in ('lifespan.startup.complete', 'lifespan.startup.failed',
                        'lifespan.shutdown.complete', 'lifespan.shutdown.failed'):
            raise RuntimeError('unexpected ASGI lifespan message %r' % kind)
        self.answered = True
        if self.answer is not None and not self.answer.done():
            failed = kind.endswith('.failed')
            self.answer.set_result((message.get('message') or 'failed') if failed else None)

    async def _ask(self, kind):
        self.answer = self.loop.create_future()
        await self.inbox.put({'type': kind})
        return await self.answer

    async def startup(self):
        """-> None when the app completed startup, else the reason it did not."""
        self.task = self.loop.create_task(self._main())
        return await self._ask('lifespan.startup')

    async def shutdown(self):
        if self.task.done():
            return
        failure = await self._ask('lifespan.shutdown')
        if failure is not None:
            sys.stderr.write('lifespan shutdown failed: %s\n' % failure)


def _start_lifespan(worker, mode):
    """Runs lifespan startup; returns None, or the boot error text."""
    lifespan = Lifespan(worker.app, worker.state, worker.loop)
    failure = worker.loop.run_until_complete(lifespan.startup())
    if failure is None:
        worker.lifespan = lifespan
        return None
    if lifespan.error is not None and not lifespan.answered and mode == 'auto':
        # The app raised instead of answering: like Uvicorn, take it as an app without
        # lifespan support and go on.
        last = lifespan.error.strip().splitlines()[-1]
        sys.stderr.write('ASGI lifespan unsupported by the app (lifespan auto), going on: %s\n' % last)
        worker.state.clear()
        return None
    if lifespan.error is None and failure == 'the app returned without answering' and mode == 'auto':
        sys.stderr.write('ASGI lifespan unsupported by the app (lifespan auto), going on: '
                         'it returned without answering lifespan.startup\n')
        worker.state.clear()
        return None
    return 'ASGI lifespan startup failed: %s' % failure


def _serve_asgi(socks, app, config, hooks, info):
    """worker_class asgi: every channel is served by one asyncio event loop."""
    global asyncio
    import asyncio  # here: WSGI workers do not pay for it
    import signal
    try:
        import uvloop  # faster socket calls when the app's environment has it
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = AsgiWorker(app, loop)
    if config['lifespan'] != 'off':
        failure = _start_lifespan(worker, config['lifespan'])
        if failure is not None:
            _boot_failed(socks[0], failure)
    _run_hook(hooks, 'post_worker_init', info)
    exit_hook = _hook(hooks, 'worker_exit')  # after lifespan shutdown, as the process ends
    if exit_hook is not None:
        _exit_hooks.append(lambda: _call_hook('worker_exit', exit_hook, info))
    python = '%d.%d.%d' % sys.version_info[:3]
    socks[0].setblocking(True)
    socks[0].sendall(encode_ready(os.getpid(), python))
    for sock in socks:
        sock.setblocking(False)
        loop.run_until_complete(loop.create_unix_connection(lambda: AsgiChannel(worker), sock=sock))
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    loop.run_forever()

# ---------------------------------------------------------------------------------------
# Zygote (preload): import once, fork workers on Caddy's request
# ---------------------------------------------------------------------------------------

_FORK_HEAD = struct.Struct('>IBI')
FORK_FDS = 0x33  # Caddy -> zygote: empty; the next descriptors of a FORK
_FORK_FD_BATCH = 250
_EXITED = struct.Struct('>IBIi')
_FORKED = struct.Struct('>IBI')


def _zygote(spec, config, control):
    """Import the app, then fork a worker for each FORK frame and report exits. The zygote
    starts no thread, so forking it is safe."""
    import select
    import signal
    try:
        if config['dump_fd'] is not None:
            _install_stack_dump(config['dump_fd'])
        hooks = _load_hooks(config['hooks'])
        _run_hook(hooks, 'on_starting', WorkerInfo(spec, config))
        app = load_app(spec)
    except BaseException:
        _boot_failed(control, traceback.format_exc())
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd fires
    if hasattr(__import__('gc'), 'freeze'):
        __import__('gc').freeze()  # keep imported objects out of GC scans: fewer CoW copies
    control.setblocking(True)
    control.sendall(encode_ready(os.getpid(), '%d.%d.%d' % sys.version_info[:3]))
    while True:
        readable, _, _ = select.select([control, wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
            _reap(control)
        if control in readable:
            fds = _recv_fork(control, config)
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _become_worker(spec, config, hooks, app, fds, control, (wake_r, wake_w))
            for fd in fds:
                os.close(fd)
            control.sendall(_FORKED.pack(4, FORKED, pid))


def _recv_fork(control, config):
    """Read one FORK frame and its descriptors; EOF means Caddy is gone."""
    want = config['threads'] + 3
    fds = []
    head, expect = _FORK_HEAD, FORK
    while True:
        try:
            msg, batch, _, _ = socket.recv_fds(control, head.size, _FORK_FD_BATCH)
        except OSError:
            _peer_gone()
        fds += batch
        if not msg:
            _peer_gone()
        if len(msg) != head.size:
            _violation('short FORK frame')
        fields = head.unpack(msg)
        if fields[1] != expect or fields[0] != head.size - 5 or (expect == FORK and fields[2] != want):
            for fd in fds:
                os.close(fd)
            _violation('bad FORK frame: type 0x%02x, %d fds' % (fields[1], len(fds)))
        if len(fds) >= want:
            break
        head, expect = _HEAD, FORK_FDS  # the next batch of descriptors
    if len(fds) != want:
        for fd in fds:
            os.close(fd)
        _violation('FORK brought %d descriptors, want %d' % (len(fds), want))
    return fds


def _reap(control):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        control.sendall(_EXITED.pack(8, EXITED, pid, status))


def _become_worker(spec, config, hooks, app, fds, control, zygote_fds):
    """In the forked child: put the channels, dump pipe and output pipes in place, then
    serve. fds = channels..., dump, stdout, stderr (PROTOCOL.md)."""
    try:
        os.setpgid(0, 0)  # its own group, so Caddy can kill it and its children alone
        moved = [fcntl_dup_high(fd) for fd in fds]
        control.close()  # through its object, which would otherwise close fd 3 later
        for fd in list(fds) + list(zygote_fds):
            os.close(fd)
        threads = config['threads']
        for i, fd in enumerate(moved[:threads]):
            os.dup2(fd, 3 + i)
        os.dup2(moved[threads], 3 + threads)
        os.dup2(moved[threads + 1], 1)
        os.dup2(moved[threads + 2], 2)
        for fd in moved:
            os.close(fd)
        socks = [socket.socket(fileno=3 + i) for i in range(threads)]
        _install_stack_dump(3 + threads)
        info = WorkerInfo(spec, config)
        _run_hook(hooks, 'post_fork', info)
    except BaseException:
        try:
            sys.stderr.write('caddy-wsgi: forked worker failed to start:\n' + traceback.format_exc())
        finally:
            _flush_std()
            os._exit(3)
    try:
        if config['worker_class'] == 'asgi':
            _serve_asgi(socks, app, config, hooks, info)
        else:
            _serve_worker(socks, app, config, hooks, info)
    finally:
        _flush_std()
        os._exit(1)


def fcntl_dup_high(fd):
    """A duplicate of fd numbered above every descriptor the dup2 targets may use."""
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 256)


_dump_file = None


def _install_stack_dump(fd):
    """Before Caddy kills a stuck worker it sends SIGUSR1: faulthandler then writes every
    thread's stack to fd from C, so the dump works in an infinite loop, in a long sleep, and
    while C code holds the GIL."""
    global _dump_file
    import faulthandler
    import signal
    _dump_file = os.fdopen(fd, 'w', closefd=False)
    faulthandler.register(signal.SIGUSR1, file=_dump_file, all_threads=True)
    # A crash (segfault in C code, abort) writes the Python stacks there too: Caddy logs
    # them with the worker's exit.
    faulthandler.enable(file=_dump_file, all_threads=True)


def _boot_failed(sock, text):
    try:
        sys.stderr.write(text)
    except Exception:
        pass
    try:
        sock.sendall(encode_boot_error(text))
    except OSError:
        pass
    _flush_std()
    os._exit(3)


if __name__ == '__main__':
    main(sys.argv[1:])
