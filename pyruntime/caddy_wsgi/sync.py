"""The sync worker class (worker_class sync, and threads): each channel is served by
its own thread, one exchange at a time, with the WSGI app called in that thread."""

import io
import os
import sys
import threading
import traceback
from time import monotonic

from .codec import (
    FLAG_FINAL, FLAG_STREAM, INFORMATIONAL, LOG_WARNING, REQUEST, END_FRAME, ProtocolError,
    decode_request, encode_error, encode_file, encode_frame, informational_block)
from .hooks import call_hook, hook
from .process import flush_std, violation
from .transport import BlockingChannel
from .worker import Worker
from .wsgi import (
    FileWrapper, InputStream, Response, ResponseError, base_environ, close_result, content_length,
    error_text, sendable_file, wsgi_header_block)


class Channel(BlockingChannel):
    """Serves one socket, one exchange at a time, on the thread that calls serve()."""

    def __init__(self, worker, sock, base):
        BlockingChannel.__init__(self, sock, worker.peer_gone, worker.config.get('ring', False))
        self.app = worker.app
        self.base = base
        self.pre_request = None  # hooks, when the hooks module defines them
        self.post_request = None
        # Built once per channel, not per request; valid on the serving thread only.
        base['wsgi.early_hints'] = self.early_hints
        self.ident = None

    def early_hints(self, headers):
        """environ['wsgi.early_hints'], as Gunicorn's: a 103 Early Hints response with
        these (name, value) pairs, ahead of the response. Caddy drops it once the
        response has begun, and for HTTP/1.0 clients."""
        if threading.get_ident() != self.ident:
            # Another thread's send could interleave with this channel's frames.
            raise RuntimeError('wsgi.early_hints called outside the thread of its request')
        self.send(encode_frame(INFORMATIONAL, informational_block(103, headers)))

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
                    violation(e)
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
            call_hook('post_request', self.post_request, self.hooked_env, status)

    def handle(self, flags, parts, body):
        env = self.base.copy()
        it = iter(parts)
        env.update(zip(it, it))
        env['wsgi.input'] = InputStream(self) if flags & FLAG_STREAM else io.BytesIO(body)
        self.cancelled = False
        resp = Response(self)
        if self.pre_request is not None or self.post_request is not None:
            self.hooked_env, self.hooked_resp = env, resp
            if self.pre_request is not None:
                call_hook('pre_request', self.pre_request, env)
        try:
            result = self.app(env, resp.start_response)
        except Exception:
            self.fail(resp, None)
            return
        # Fast path: a list of one bytes becomes a single HEADERS(FINAL) frame.
        if ((type(result) is list or type(result) is tuple) and len(result) == 1
                and type(result[0]) is bytes and not resp.sent and resp.status is not None):
            try:
                block = wsgi_header_block(resp.status, resp.headers)
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
        err = close_result(result)
        if err is not None:
            if not resp.sent:
                self.send(encode_error(err))
                return
            # The body is complete: keep the response, but tell Caddy in this exchange.
            self.log(LOG_WARNING, 'close() of the response iterable raised:\n' + err)
        self.finish(resp)

    def iterate(self, resp, result):
        """Send each block; between blocks, stop if Caddy said the client left. That costs
        a syscall, so it is asked at most once a millisecond (a fast stream's blocks come
        every few microseconds), and not after the block that completes Content-Length
        (Flask's and Django's one block: only StopIteration follows)."""
        send_block = resp.send_block
        poll_cancel = self.poll_cancel
        limit = None  # Content-Length, once the first block went out (-1: none)
        sent = 0
        polled = 0.0
        for block in result:
            if type(block) is not bytes and not isinstance(block, bytes):
                raise ResponseError('response body blocks must be bytes, not %s'
                                    % type(block).__name__)
            if block:
                send_block(block)
                sent += len(block)
                if limit is None:
                    limit = content_length(resp.headers)
                if sent - len(block) < limit <= sent:
                    continue
            now = monotonic()
            if now - polled < 0.001:
                continue
            polled = now
            if poll_cancel():
                return

    def send_file(self, resp, wrapper):
        """HEADERS + FILE for a wrapped regular file -> False if it must be iterated instead."""
        found = sendable_file(wrapper)
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
            self.send(END_FRAME)
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
        text = error_text()
        if result is not None:
            err = close_result(result)
            if err is not None:
                text += '\nthen close() of the response iterable raised:\n' + err
        self.send(encode_error(text))


def serve_forever(chan):
    """Thread body: a crash of the serve loop itself must not leave Caddy waiting."""
    try:
        chan.serve()
    except BaseException:
        try:
            sys.stderr.write('caddy-wsgi worker %d: serve loop crashed:\n%s'
                             % (os.getpid(), traceback.format_exc()))
        except Exception:
            pass
        flush_std()
        os._exit(1)


class SyncWorker(Worker):
    """worker_class sync: one thread per channel (config threads)."""

    def run(self, socks):
        """Run the serve loops; READY goes out on channel 0 first."""
        hooks = self.hooks
        chans = []
        for sock in socks:
            sock.setblocking(True)  # the serve loop relies on blocking sends and receives
            chan = Channel(self, sock, base_environ(self.config))
            chan.pre_request = hook(hooks, 'pre_request')
            chan.post_request = hook(hooks, 'post_request')
            chans.append(chan)
        for chan in chans[1:]:
            threading.Thread(target=serve_forever, args=(chan,), daemon=True,
                             name='caddy-wsgi-%d' % chan.sock.fileno()).start()
        chans[0].send(self.ready_frame())
        serve_forever(chans[0])
