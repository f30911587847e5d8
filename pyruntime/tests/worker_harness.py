"""Test harness: plays Caddy's side of PROTOCOL.md against a real worker subprocess."""

import fcntl
import json
import os
import re
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIME_DIR = os.path.dirname(HERE)
PACKAGE = 'caddy_wsgi'
if RUNTIME_DIR not in sys.path:
    sys.path.insert(0, RUNTIME_DIR)

from caddy_wsgi import codec as w  # noqa: E402


def _go_bootstrap():
    """pyruntime.Bootstrap, read from embed.go: exactly what the Go side runs."""
    with open(os.path.join(RUNTIME_DIR, 'embed.go')) as f:
        decl = f.read().split('const Bootstrap = ', 1)[1].split('\n\n', 1)[0]
    return ''.join(re.findall(r'"((?:[^"\\]|\\.)*)"', decl))


def bundle():
    """What pyruntime.Source holds: {path: source} of the package's .py files, as JSON."""
    sources = {}
    for dirpath, dirnames, filenames in os.walk(os.path.join(RUNTIME_DIR, PACKAGE)):
        dirnames[:] = sorted(d for d in dirnames if d != '__pycache__')
        for name in sorted(filenames):
            if name.endswith('.py'):
                path = os.path.join(dirpath, name)
                with open(path, encoding='utf-8') as f:
                    sources[os.path.relpath(path, RUNTIME_DIR).replace(os.sep, '/')] = f.read()
    return json.dumps(sources, sort_keys=True).encode('utf-8')


BOOTSTRAP = _go_bootstrap()

TERMINAL = ('final', w.END, w.ERROR)


def _high(fd):
    """A close-on-exec duplicate >= 100, so the child's dup2 onto 0..3+T never collides."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)


def base_environ(path='/', method='GET', **extra):
    env = {
        'REQUEST_METHOD': method, 'SCRIPT_NAME': '', 'PATH_INFO': path, 'QUERY_STRING': '',
        'SERVER_NAME': 'localhost', 'SERVER_PORT': '80', 'SERVER_PROTOCOL': 'HTTP/1.1',
        'REMOTE_ADDR': '127.0.0.1', 'REMOTE_PORT': '40000', 'wsgi.url_scheme': 'http',
    }
    env.update(extra)
    return env


class Conn:
    """Caddy's end of one channel: frame reader (keeps SCM_RIGHTS fds) and writer."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.fds = []

    def _recv_exact(self, n, timeout):
        self.sock.settimeout(timeout)
        while len(self.buf) < n:
            data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(4 * 8))
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(cdata) - len(cdata) % 4
                    self.fds.extend(int.from_bytes(cdata[i:i + 4], sys.byteorder)
                                    for i in range(0, usable, 4))
            if not data:
                raise EOFError('worker closed the channel')
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_frame(self, timeout=10):
        """-> (type, fields); a FILE frame's fields get the received fd appended."""
        head = self._recv_exact(5, timeout)
        length = int.from_bytes(head[:4], 'big')
        frame = head + self._recv_exact(length, timeout)
        ftype, fields, _ = w.decode_frame(frame)
        if ftype in (w.FILE, w.RING):
            fields = fields + (self.fds.pop(0),)
        return ftype, fields

    def send(self, data):
        self.sock.sendall(data)

    def request(self, path='/', body=b'', stream=False, env=None, **extra):
        environ = base_environ(path, **extra)
        if body and not stream:
            environ['CONTENT_LENGTH'] = str(len(body))
        environ.update(env or {})
        self.send(w.encode_request(w.FLAG_STREAM if stream else 0, environ,
                                   b'' if stream else body))

    def response(self, body=b'', chunk=7, abort=False, timeout=10):
        """Collect frames to the end of the exchange, answering READs from `body`."""
        frames = []
        while True:
            ftype, fields = self.read_frame(timeout)
            if ftype == w.READ:
                if abort:
                    self.send(w.encode_data(w.FLAG_ABORTED))
                    continue
                piece, body = body[:min(chunk, fields[0])], body[min(chunk, fields[0]):]
                self.send(w.encode_data(0 if body else w.FLAG_EOF, piece))
                frames.append((ftype, fields))
                continue
            frames.append((ftype, fields))
            if ftype == w.ERROR or ftype == w.END:
                return frames
            if ftype == w.HEADERS and fields[0] & w.FLAG_FINAL:
                return frames

    def get(self, path='/', body=b'', stream=False, chunk=7, abort=False, **extra):
        self.request(path, body, stream, **extra)
        return self.response(body if stream else b'', chunk=chunk, abort=abort)


class Worker:
    """A worker subprocess started the way Caddy starts it (bootstrap on stdin, fds 3..)."""

    def __init__(self, cwd, spec, threads=1, python=None, **config):
        cfg = {'threads': threads, 'multiprocess': False,
               'server_software': 'caddy-wsgi/test', 'pythonpath': []}
        cfg.update(config)
        self.socks, child_fds = [], []
        for _ in range(threads):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self.socks.append(ours)
            child_fds.append(_high(theirs.fileno()))
            theirs.close()
        self.conns = [Conn(s) for s in self.socks]
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        stdin_r, stdin_w = os.pipe()
        std = [_high(stdin_r), _high(self.out.fileno()), _high(self.err.fileno())]
        os.close(stdin_r)
        python = python or sys.executable
        argv = [python, '-c', BOOTSTRAP, 'caddy-wsgi-worker', spec, json.dumps(cfg)]
        # fork+exec rather than Popen: the child needs its channels at exactly fds 3.., and
        # only a hand-written child can dup2 onto them without clobbering Popen's own pipes.
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - child
            try:
                os.chdir(cwd)
                for target, fd in enumerate(std + child_fds):
                    os.dup2(fd, target)
                os.execv(python, argv)
            finally:
                os._exit(127)
        for fd in std + child_fds:
            os.close(fd)
        with os.fdopen(stdin_w, 'wb') as pipe:
            pipe.write(bundle())
        self.status = None

    @property
    def conn(self):
        return self.conns[0]

    def ready(self):
        ftype, fields = self.conn.read_frame()
        assert ftype == w.READY, (ftype, fields, self.stderr())
        return fields[0]

    def wait(self, timeout=10):
        """Exit status, or None if still running after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)
        return self.status

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode('utf-8', 'replace')

    def stdout(self):
        self.out.seek(0)
        return self.out.read().decode('utf-8', 'replace')

    def close(self):
        """Close the channels (the worker exits on EOF); kill it if it does not."""
        for s in self.socks:
            s.close()
        if self.wait(5) is None:
            os.kill(self.pid, 9)
            self.wait(5)
        return self.status  # out/err stay readable until dispose()

    def dispose(self):
        self.close()
        self.out.close()
        self.err.close()
