"""The WSGI objects of one request: wsgi.input for streamed bodies, wsgi.file_wrapper,
start_response/write (Response), the checks that turn status and headers into a HEADERS
block, and the constant part of the environ."""

import io
import os
import stat
import sys
import traceback

from .codec import FLAG_ABORTED, FLAG_EOF, MAX_HEADER_BLOCK, MAX_PAYLOAD, READ_CHUNK
from .transport import ClientDisconnected

_READ_ALL_CHUNK = READ_CHUNK  # read(): as large as one DATA frame can be
_MAX_DATA = MAX_PAYLOAD - 1  # DATA carries a flags byte


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
        return self._take(size)

    def _take(self, n):
        """The first n buffered bytes, copied once (buf[:n] would copy them twice)."""
        buf = self._buf
        if n >= len(buf):
            data = bytes(buf)
            buf.clear()
            return data
        with memoryview(buf) as view:
            data = bytes(view[:n])
        del buf[:n]  # O(1) at the front of a bytearray
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
        return self._take(end)

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


def content_length(headers):
    """The response's one Content-Length as an int, or -1 (none, several, or not a number)."""
    found = -1
    for name, value in headers:
        if len(name) == 14 and name.lower() == 'content-length':
            if found >= 0:
                return -1
            try:
                found = int(value)
            except ValueError:
                return -1
    return found


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


def sendable_file(wrapper):
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


def wsgi_header_block(status, headers):
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
            if len(data) > MAX_HEADER_BLOCK:
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


class Response:
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
        return wsgi_header_block(self.status, self.headers)

    def send_block(self, data):
        """Send one non-empty body block; the first one carries the headers."""
        if self.sent:
            self.chan.send_body(data)
        else:
            self.chan.send_headers(0, self.header_block(), data)
            self.sent = True


def close_result(result):
    """Call result.close() if it has one -> None, or the traceback text if it raised."""
    close = getattr(result, 'close', None)
    if close is None:
        return None
    try:
        close()
    except Exception:
        return traceback.format_exc()
    return None


def error_text():
    """ERROR text for the exception being handled: our own contract errors need no traceback."""
    exc = sys.exc_info()[1]
    if isinstance(exc, ResponseError):
        return str(exc)
    return traceback.format_exc()


def base_environ(config):
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
