"""The frame codec of PROTOCOL.md: frame types, flags, encoders and decoders.

Pure functions, shared by the runtime and its tests (which play Caddy's side).
"""

import json
import re
import struct

MAX_PAYLOAD = 16 * 1024 * 1024

# Caddy -> worker
REQUEST = 0x01
DATA = 0x02
CANCEL = 0x03
WS_RECEIVE = 0x04  # ASGI WebSocket: a client message (u8 flags, data)
WS_DISCONNECT = 0x05  # ASGI WebSocket: the client closed (u16 code, UTF-8 reason)
DATA_RING = 0x06  # DATA whose bytes are in the ring's inbound area (u8 flags, u32 length)
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
RING_BODY = 0x1B  # a body block in the response ring (u8 slot, u32 length)
RING = 0x1C  # the channel's response ring (u32 slots, u32 slot size; its memfd in SCM_RIGHTS)
# Boot, worker -> Caddy, channel 0
READY = 0x20
BOOT_ERROR = 0x21
# Zygote control channel (preload)
FORK = 0x30  # Caddy -> zygote: u8 fd count, the fds in SCM_RIGHTS
FORKED = 0x31  # zygote -> Caddy: u32 pid
EXITED = 0x32  # zygote -> Caddy: u32 pid, i32 wait status
FORK_FDS = 0x33  # Caddy -> zygote: empty; the next descriptors of a FORK

FRAME_TYPES = frozenset(
    (REQUEST, DATA, DATA_RING, CANCEL, WS_RECEIVE, WS_DISCONNECT, HEADERS, BODY, FILE, END, READ, ERROR,
     LOG, WS_ACCEPT, WS_SEND, WS_CLOSE, TRAILERS, READY, BOOT_ERROR, INFORMATIONAL, RING_BODY,
     RING))
# Frames a worker may receive; anything else from Caddy is a protocol violation.
INBOUND_TYPES = frozenset((REQUEST, DATA, DATA_RING, CANCEL, WS_RECEIVE, WS_DISCONNECT))
# Payload sizes fixed by the protocol, checked on the header so that a bogus length is
# refused before its payload is read.
_FIXED_LENGTH = {CANCEL: 0, END: 0, READ: 4, FILE: 16, RING_BODY: 5, RING: 12, DATA_RING: 5}

FLAG_STREAM = 0x01  # REQUEST: the body is pulled with READ
FLAG_WEBSOCKET = 0x02  # REQUEST: a WebSocket handshake (ASGI workers only)
FLAG_BINARY = 0x01  # WS_RECEIVE/WS_SEND: bytes, not text
FLAG_MORE = 0x02  # WS_RECEIVE/WS_SEND: the message goes on in the next frame
FLAG_EOF = 0x01  # DATA: no body after these bytes
FLAG_ABORTED = 0x02  # DATA: the upload failed or the client left
FLAG_FINAL = 0x01  # HEADERS: the bytes after the block are the whole body

LOG_INFO, LOG_WARNING, LOG_ERROR = 0, 1, 2

HEAD = struct.Struct('>IB')  # payload length, type
_HEAD_FLAGS_U32 = struct.Struct('>IBBI')  # REQUEST/HEADERS head: + flags, u32 E/H
_HEAD_FLAGS = struct.Struct('>IBB')  # DATA/LOG head: + flags/level
_FLAGS_U32 = struct.Struct('>BI')
_U32 = struct.Struct('>I')
_HEAD_U32 = struct.Struct('>IBI')  # READ frame
_FILE_PAYLOAD = struct.Struct('>Qq')
_HEAD_FILE = struct.Struct('>IBQq')
_RING_BODY = struct.Struct('>BI')  # RING_BODY, DATA_RING payload: u8 slot/flags, u32 length
_RING = struct.Struct('>III')  # RING payload: u32 slots, u32 slot size, u32 inbound size
_HEAD_RING_BODY = struct.Struct('>IB' + _RING_BODY.format[1:])
_HEAD_RING = struct.Struct('>IB' + _RING.format[1:])


class ProtocolError(Exception):
    """The peer sent something the protocol does not allow."""


def frame_head(ftype, length):
    """The 5-byte frame header."""
    return HEAD.pack(length, ftype)


def encode_frame(ftype, payload=b''):
    if len(payload) > MAX_PAYLOAD:
        raise ValueError('frame payload over 16 MiB')
    return HEAD.pack(len(payload), ftype) + payload


def encode_request(flags, environ, body=b''):
    """REQUEST from a mapping or a list of (key, value) str pairs (the Caddy side)."""
    items = environ.items() if hasattr(environ, 'items') else environ
    env = '\0'.join(s for pair in items for s in pair).encode('latin-1')
    return _HEAD_FLAGS_U32.pack(5 + len(env) + len(body), REQUEST, flags, len(env)) + env + body


def encode_data(flags, data=b''):
    return _HEAD_FLAGS.pack(1 + len(data), DATA, flags) + data


def encode_cancel():
    return HEAD.pack(0, CANCEL)


def encode_read(n):
    return _HEAD_U32.pack(4, READ, n)


def headers_prefix(flags, block, body_len):
    """Everything of a HEADERS frame but its body, so big bodies can be sent uncopied."""
    return _HEAD_FLAGS_U32.pack(5 + len(block) + body_len, HEADERS, flags, len(block)) + block


def encode_headers(flags, block, body=b''):
    return headers_prefix(flags, block, len(body)) + body


def encode_body(data):
    return HEAD.pack(len(data), BODY) + data


def encode_file(offset, count):
    return _HEAD_FILE.pack(16, FILE, offset, count)


def encode_ring_body(slot, n):
    return _HEAD_RING_BODY.pack(5, RING_BODY, slot, n)


def encode_ring(slots, slot_size, inbound):
    return _HEAD_RING.pack(12, RING, slots, slot_size, inbound)


def encode_data_ring(flags, n):
    return _HEAD_RING_BODY.pack(5, DATA_RING, flags, n)


def encode_end():
    return HEAD.pack(0, END)


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
    _check_data(p[0], len(p) - 1)
    return p[0], p[1:]


def decode_data_ring(p):
    """DATA_RING payload -> (flags, how many bytes of the ring's inbound area)."""
    flags, n = _RING_BODY.unpack(p)
    _check_data(flags, n)
    return flags, n


def _check_data(flags, n):
    """The rules of DATA (and DATA_RING) for its flags and its n body bytes."""
    if flags & ~(FLAG_EOF | FLAG_ABORTED):
        raise ProtocolError('DATA has unknown flags 0x%02x' % flags)
    if flags & FLAG_ABORTED and n:
        raise ProtocolError('DATA with ABORTED carries bytes')
    if not flags and not n:
        raise ProtocolError('DATA without EOF carries no bytes')


def decode_ws_message(p):
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


def _decode_ring_body(p):
    return _RING_BODY.unpack(p)


def _decode_ring(p):
    return _RING.unpack(p)


_DECODERS = {
    REQUEST: decode_request, DATA: decode_data, CANCEL: _decode_empty,
    HEADERS: _decode_headers, BODY: _decode_body, FILE: _decode_file, END: _decode_empty,
    READ: _decode_read, ERROR: _decode_text, LOG: _decode_log,
    READY: _decode_ready, BOOT_ERROR: _decode_text,
    WS_RECEIVE: decode_ws_message, WS_DISCONNECT: decode_ws_close,
    WS_ACCEPT: _decode_block, WS_SEND: decode_ws_message, WS_CLOSE: decode_ws_close,
    TRAILERS: _decode_block, INFORMATIONAL: _decode_block,
    RING_BODY: _decode_ring_body, RING: _decode_ring, DATA_RING: decode_data_ring,
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
    length, ftype = HEAD.unpack_from(buf, pos)
    check_header(length, ftype)
    end = pos + 5 + length
    if end > len(buf):
        raise ProtocolError('truncated frame payload')
    return ftype, decode_payload(ftype, memoryview(buf)[pos + 5:end]), end


# Smallest READ, so small reads do not cost a round trip each: 256 KiB (Caddy's largest
# DATA) less the frame head, so a DATA frame lands in the channel's receive buffer.
READ_CHUNK = 256 * 1024 - 6
MAX_HEADER_BLOCK = MAX_PAYLOAD - 5  # HEADERS: flags + u32 + block must fit one frame
END_FRAME = encode_end()


# RFC 9110 field names (tokens) and values (no control characters but HTAB).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FIELD_VALUE = re.compile(r'[^\x00-\x08\x0a-\x1f\x7f]*\Z')


def informational_block(code, headers):
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
