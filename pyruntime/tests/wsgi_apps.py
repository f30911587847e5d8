"""WSGI apps for the end-to-end tests; copied into a temp dir that is the worker's cwd.

`router` dispatches on PATH_INFO. Iterables that record close() write a line to the file
named by the X-Marker request header (relative to the cwd).
"""

import hashlib
import json
import os
import sys
import threading
import time
from wsgiref.validate import validator

TEXT = [('Content-Type', 'text/plain')]


def mark(environ, what='closed'):
    name = environ.get('HTTP_X_MARKER')
    if name:
        with open(name, 'a') as f:
            f.write(what + '\n')


class Closing:
    """Iterable over `blocks` (any iterable) whose close() is recorded."""

    def __init__(self, environ, blocks, close_raises=False):
        self.environ = environ
        self.blocks = blocks
        self.close_raises = close_raises

    def __iter__(self):
        return iter(self.blocks)

    def close(self):
        mark(self.environ)
        if self.close_raises:
            raise RuntimeError('close-failed-marker')


def fast(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('X-A', 'b')])
    return [b'hello']


def iterated(environ, start_response):
    start_response('200 OK', TEXT)
    return Closing(environ, [b'', b'one', b'', b'two', b'three'])


def empty(environ, start_response):
    start_response('204 No Content', [])
    return Closing(environ, [b'', b''])


def writes(environ, start_response):
    write = start_response('200 OK', TEXT)
    write(b'')
    write(b'w1')
    write(b'w2')
    return Closing(environ, [b'it'])


def exc_info_before(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('X-First', '1')])
    try:
        raise ValueError('early')
    except ValueError:
        start_response('500 Oops', [('Content-Type', 'text/html')], sys.exc_info())
    return [b'oops']


def exc_info_after(environ, start_response):
    write = start_response('200 OK', TEXT)
    write(b'partial')
    try:
        raise ValueError('late-marker')
    except ValueError:
        start_response('500 Oops', TEXT, sys.exc_info())
    return [b'never']


def twice(environ, start_response):
    start_response('200 OK', TEXT)
    start_response('200 OK', TEXT)
    return [b'x']


def str_body(environ, start_response):
    start_response('200 OK', TEXT)
    return Closing(environ, ['text'])


def nul_header(environ, start_response):
    start_response('200 OK', [('X-Bad', 'a\0b')])
    return [b'x']


def latin_header(environ, start_response):
    start_response('200 OK', [('X-Euro', '\u20ac')])
    return Closing(environ, [b'x'])


def bad_headers_type(environ, start_response):
    start_response('200 OK', (('X-T', 'v'),))
    return [b'x']


def bad_status(environ, start_response):
    start_response(b'200 OK', TEXT)
    return [b'x']


def raises(environ, start_response):
    raise RuntimeError('boom-marker')


def raises_in_iteration(environ, start_response):
    start_response('200 OK', TEXT)

    def gen():
        yield b'first'
        raise RuntimeError('iter-boom-marker')
    return Closing(environ, gen())


def raises_in_close(environ, start_response):
    start_response('200 OK', TEXT)
    return Closing(environ, [b'body'], close_raises=True)


def no_start(environ, start_response):
    return Closing(environ, [b'x'])


def stream_echo(environ, start_response):
    inp = environ['wsgi.input']
    out = {'line1': inp.readline().decode(), 'part': inp.read(3).decode(),
           'limited': inp.readline(2).decode(), 'rest': [l.decode() for l in inp],
           'eof': inp.read().decode(), 'eof2': inp.read(10).decode()}
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [json.dumps(out).encode()]


def read_all(environ, start_response):
    data = environ['wsgi.input'].read()
    start_response('200 OK', TEXT)
    return [b'%d:%s' % (len(data), data[:16])]


def digest(environ, start_response):
    """Reads the body 64 KiB at a time -> 'length:sha256'."""
    inp, h, n = environ['wsgi.input'], hashlib.sha256(), 0
    while True:
        chunk = inp.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    start_response('200 OK', TEXT)
    return [b'%d:%s' % (n, h.hexdigest().encode())]


def readlines(environ, start_response):
    lines = environ['wsgi.input'].readlines()
    start_response('200 OK', TEXT)
    return [json.dumps([l.decode() for l in lines]).encode()]


def read_none_and_types(environ, start_response):
    inp = environ['wsgi.input']
    try:
        inp.read('3')
        outcome = 'no error'
    except TypeError:
        outcome = 'TypeError'
    data = inp.read(None)
    start_response('200 OK', TEXT)
    return [('%s:%s' % (outcome, data.decode())).encode()]


def abort(environ, start_response):
    try:
        environ['wsgi.input'].read()
        outcome = 'no error'
    except OSError as e:
        outcome = 'OSError:' + type(e).__name__
    start_response('200 OK', TEXT)
    return [outcome.encode()]


def file_fd(environ, start_response):
    f = open('payload.bin', 'rb')
    f.read(5)  # the buffered file reads ahead; tell() must still say 5
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    return environ['wsgi.file_wrapper'](f)


def file_iter(environ, start_response):
    import io
    start_response('200 OK', TEXT)
    return environ['wsgi.file_wrapper'](io.BytesIO(b'abcdefghij'), 4)


def infinite(environ, start_response):
    start_response('200 OK', TEXT)

    def gen():
        while True:
            yield b'tick'
            time.sleep(0.001)
    return Closing(environ, gen())


def write_forever(environ, start_response):
    write = start_response('200 OK', TEXT)
    try:
        while True:
            write(b'tick')
            time.sleep(0.001)
    except OSError:
        mark(environ, 'write-raised')
        raise


def env_dump(environ, start_response):
    keys = {k: v for k, v in environ.items() if isinstance(v, (str, bool, tuple))}
    keys['input_type'] = type(environ['wsgi.input']).__name__
    keys['errors_is_stderr'] = environ['wsgi.errors'] is sys.stderr
    keys['file_wrapper'] = environ['wsgi.file_wrapper'].__name__
    keys['pid'] = os.getpid()
    keys['argv'] = sys.argv
    keys['path0'] = sys.path[:3]
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [json.dumps(keys).encode()]


def slow(environ, start_response):
    time.sleep(0.3)
    start_response('200 OK', TEXT)
    return [b'slow']


def big(environ, start_response):
    n = int(environ['QUERY_STRING'])
    start_response('200 OK', TEXT)
    return [b'x' * n]


def blocks(environ, start_response):
    """QUERY_STRING 'n,size': n blocks of size bytes, block i filled with byte i."""
    n, size = (int(x) for x in environ['QUERY_STRING'].split(','))
    start_response('200 OK', TEXT)
    return (bytes([i % 256]) * size for i in range(n))


def big_iter(environ, start_response):
    n = int(environ['QUERY_STRING'])
    start_response('200 OK', TEXT)
    return Closing(environ, [b'y' * n, b'z'])


def _validated(environ, start_response):
    body = environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
    environ['wsgi.errors'].write('validate-app-log\n')
    write = start_response('200 OK', [('Content-Type', 'text/plain')])
    write(b'w:')
    return [b'v:', body]


def _validated_file(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return environ['wsgi.file_wrapper'](open('payload.bin', 'rb'))


def _raises(fn, *args):
    try:
        fn(*args)
    except Exception as e:
        return type(e).__name__
    return 'no exception'


def early_hints(environ, start_response):
    hints = environ['wsgi.early_hints']
    hints([('Link', '</a.css>; rel=preload; as=style'), (b'Link', b'</b.js>; rel=preload')])
    hints([])
    try:
        hints([('Link', 'x\r\nSet-Cookie: evil=1')])
    except ValueError as e:
        problem = str(e)
    other = []
    thread = threading.Thread(target=lambda: other.append(_raises(hints, [])))
    thread.start()
    thread.join()
    start_response('200 OK', TEXT)
    yield problem.encode() + b'|' + other[0].encode()
    hints([('Link', '</late.css>')])  # after the headers: Caddy drops it
    yield b'!'


ROUTES = {
    '/fast': fast, '/iter': iterated, '/empty': empty, '/write': writes,
    '/excinfo': exc_info_before, '/excinfo-after': exc_info_after, '/twice': twice,
    '/str': str_body, '/nul-header': nul_header, '/latin-header': latin_header,
    '/headers-tuple': bad_headers_type, '/bad-status': bad_status, '/raise': raises,
    '/raise-iter': raises_in_iteration, '/raise-close': raises_in_close,
    '/no-start': no_start, '/stream-echo': stream_echo, '/read-all': read_all, '/digest': digest,
    '/readlines': readlines, '/read-types': read_none_and_types, '/abort': abort,
    '/file': file_fd, '/file-iter': file_iter, '/infinite': infinite,
    '/write-forever': write_forever, '/env': env_dump, '/slow': slow, '/big': big,
    '/big-iter': big_iter, '/blocks': blocks, '/validate': validator(_validated),
    '/validate-file': validator(_validated_file), '/hints': early_hints,
}


def router(environ, start_response):
    return ROUTES[environ['PATH_INFO']](environ, start_response)


application = fast


def make_app(greeting='factory', times=1):
    body = (greeting * times).encode()

    def app(environ, start_response):
        start_response('200 OK', TEXT)
        return [body]
    return app


class _NS:
    pass


ns = _NS()
ns.inner = _NS()
ns.inner.app = make_app('dotted')
not_callable = 42
