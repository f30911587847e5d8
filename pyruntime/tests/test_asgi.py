"""The ASGI channel without sockets: frames in through data_received, frames out through a
recording transport. Covers the exchange rules of PROTOCOL.md's ASGI section."""

import asyncio
import os
import unittest

from worker_harness import w
from caddy_wsgi.asgi import websocket
from caddy_wsgi.asgi.channel import AsgiChannel
from caddy_wsgi.asgi.http import asgi_header_block
from caddy_wsgi.asgi.lifespan import start_lifespan
from caddy_wsgi.asgi.worker import AsgiWorker
from caddy_wsgi.transport import ClientDisconnected

ENV = [('REQUEST_METHOD', 'GET'), ('SCRIPT_NAME', '/app'), ('PATH_INFO', '/caf\xc3\xa9'),
       ('QUERY_STRING', 'a=1'), ('RAW_URI', '/app/caf%C3%A9?a=1'), ('SERVER_PROTOCOL', 'HTTP/2.0'),
       ('wsgi.url_scheme', 'https'), ('SERVER_NAME', '127.0.0.1'), ('SERVER_PORT', '8443'),
       ('REMOTE_ADDR', '10.0.0.1'), ('REMOTE_PORT', '5555'), ('~host', 'example.com'),
       ('~x-dup', 'one'), ('~x-dup', 'two'), ('~sec-websocket-protocol', 'chat, v2')]


class Transport:
    def __init__(self):
        self.out = bytearray()

    def write(self, data):
        self.out += data

    def frames(self):
        frames, pos = [], 0
        while pos < len(self.out):
            ftype, fields, pos = w.decode_frame(bytes(self.out), pos)
            frames.append((ftype, fields))
        self.out.clear()
        return frames


def run(test):
    asyncio.run(asyncio.wait_for(test(), 5))


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)


def asgi_worker(app, loop):
    """An AsgiWorker past its boot: the app imported, the loop made."""
    worker = AsgiWorker('test:app', {'lifespan': 'auto'})
    worker.app, worker.loop = app, loop
    return worker


def channel(app):
    worker = asgi_worker(app, asyncio.get_running_loop())
    worker.state = {'db': 'pool'}
    chan = AsgiChannel(worker)
    t = Transport()
    chan.connection_made(t)
    return chan, t


class AsgiChannelTest(unittest.TestCase):

    def test_scope_and_one_frame_response(self):
        seen = {}

        async def app(scope, receive, send):
            seen.update(scope)
            await send({'type': 'http.response.start', 'status': 201, 'headers': [(b'x-a', b'1')]})
            await send({'type': 'http.response.body', 'body': b'hi'})

        async def test():
            chan, t = channel(app)
            chan.data_received(w.encode_request(0, ENV))
            await settle()
            self.assertEqual(t.frames(), [(w.HEADERS, (w.FLAG_FINAL, '201 Created', [('x-a', '1')], b'hi'))])
        run(test)
        self.assertEqual(seen['path'], '/app/caf\xe9')
        self.assertEqual(seen['root_path'], '/app')
        self.assertEqual(seen['raw_path'], b'/app/caf%C3%A9')
        self.assertEqual(seen['http_version'], '2')
        self.assertEqual(seen['server'], ('127.0.0.1', 8443))
        self.assertEqual(seen['client'], ('10.0.0.1', 5555))
        self.assertEqual(seen['headers'][1:3], [(b'x-dup', b'one'), (b'x-dup', b'two')])
        self.assertEqual(seen['state'], {'db': 'pool'})

    def test_cancel_of_a_queued_request_waits_its_turn(self):
        release = None

        async def app(scope, receive, send):
            if scope['path'] == '/app/first':
                await release
            await send({'type': 'http.response.start', 'status': 200})
            await send({'type': 'http.response.body', 'body': scope['path'].encode()})

        async def test():
            nonlocal release
            release = asyncio.get_running_loop().create_future()
            chan, t = channel(app)
            first = [p if p[0] != 'PATH_INFO' else ('PATH_INFO', '/first') for p in ENV]
            chan.data_received(w.encode_request(0, first) + w.encode_request(0, ENV) + w.encode_cancel())
            await settle()
            self.assertEqual(t.frames(), [], 'nothing may be written while the first one runs')
            release.set_result(None)
            await settle()
            frames = t.frames()
            self.assertEqual([f[0] for f in frames], [w.HEADERS, w.ERROR])
            self.assertEqual(frames[0][1][3], b'/app/first')
        run(test)

    def test_background_task_frees_the_channel(self):
        seen = []

        async def app(scope, receive, send):
            await send({'type': 'http.response.start', 'status': 200})
            await send({'type': 'http.response.body', 'body': b'done'})
            self.assertEqual((await receive())['type'], 'http.request')
            # After the response, receive() answers at once: nothing more will come.
            self.assertEqual(await receive(), {'type': 'http.disconnect'})
            seen.append('disconnect')
            await asyncio.sleep(3600)  # a background task that outlives the response

        async def test():
            chan, t = channel(app)
            chan.data_received(w.encode_request(0, ENV))
            await settle()
            chan.data_received(w.encode_request(0, ENV))
            await settle()
            self.assertEqual([f[0] for f in t.frames()], [w.HEADERS, w.HEADERS])
        run(test)
        self.assertEqual(seen, ['disconnect', 'disconnect'])

    def test_trailers(self):
        async def app(scope, receive, send):
            self.assertIn('http.response.trailers', scope['extensions'])
            await send({'type': 'http.response.start', 'status': 200, 'trailers': True})
            await send({'type': 'http.response.body', 'body': b'x'})
            await send({'type': 'http.response.trailers', 'headers': [(b'x-sum', b'9')]})

        async def test():
            chan, t = channel(app)
            chan.data_received(w.encode_request(0, ENV))
            await settle()
            frames = t.frames()
            self.assertEqual([f[0] for f in frames], [w.HEADERS, w.TRAILERS, w.END])
            self.assertEqual(frames[1][1], ('', [('x-sum', '9')]))
        run(test)

    def test_early_hints(self):
        problems = []

        async def app(scope, receive, send):
            self.assertIn('http.response.early_hint', scope['extensions'])
            await send({'type': 'http.response.early_hint', 'links': [b'</a.css>; rel=preload']})
            await send({'type': 'http.response.informational', 'status': 103,
                        'headers': [(b'link', b'</b.js>; rel=preload')]})
            await send({'type': 'http.response.informational', 'status': 100})  # Caddy's job
            for bad in ({'status': 101}, {'status': '103'}, {'status': 200}):
                try:
                    await send(dict(bad, type='http.response.informational'))
                except RuntimeError as e:
                    problems.append(str(e))
            await send({'type': 'http.response.start', 'status': 200})
            try:
                await send({'type': 'http.response.early_hint', 'links': [b'</late>']})
            except RuntimeError as e:
                problems.append(str(e))
            await send({'type': 'http.response.body', 'body': b'x'})

        async def test():
            chan, t = channel(app)
            chan.data_received(w.encode_request(0, ENV))
            await settle()
            self.assertEqual(t.frames(), [
                (w.INFORMATIONAL, ('103', [('link', '</a.css>; rel=preload')])),
                (w.INFORMATIONAL, ('103', [('link', '</b.js>; rel=preload')])),
                (w.HEADERS, (w.FLAG_FINAL, '200 OK', [], b'x'))])
        run(test)
        self.assertEqual(len(problems), 4, problems)
        self.assertIn('after http.response.start', problems[-1])

    def test_nul_in_a_header_is_an_error(self):
        async def app(scope, receive, send):
            await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'x', b'a\0b')]})

        async def test():
            chan, t = channel(app)
            chan.data_received(w.encode_request(0, ENV))
            await settle()
            self.assertEqual([f[0] for f in t.frames()], [w.ERROR])
        run(test)

    def test_websocket(self):
        got = []

        async def app(scope, receive, send):
            self.assertEqual(scope['type'], 'websocket')
            self.assertEqual(scope['scheme'], 'wss')
            self.assertEqual(scope['subprotocols'], ['chat', 'v2'])
            self.assertEqual(await receive(), {'type': 'websocket.connect'})
            await send({'type': 'websocket.accept', 'subprotocol': 'v2', 'headers': [(b'x-a', b'1')]})
            msg = await receive()
            got.append(msg)
            await send({'type': 'websocket.send', 'text': msg['text'].upper()})
            got.append(await receive())
            with self.assertRaises(ClientDisconnected):
                await send({'type': 'websocket.send', 'bytes': b'late'})

        async def test():
            chan, t = channel(app)
            chan.data_received(w.encode_request(w.FLAG_WEBSOCKET, ENV))
            await settle()
            self.assertEqual(t.frames(), [(w.WS_ACCEPT, ('v2', [('x-a', '1')]))])
            chan.data_received(w.encode_frame(w.WS_RECEIVE, b'\x00hello'))
            await settle()
            self.assertEqual(t.frames(), [(w.WS_SEND, (False, b'HELLO'))])
            chan.data_received(w.encode_ws_close(w.WS_DISCONNECT, 4000, 'bye'))
            await settle()
            self.assertEqual([f[0] for f in t.frames()], [w.END])
        run(test)
        self.assertEqual(got, [{'type': 'websocket.receive', 'text': 'hello'},
                               {'type': 'websocket.disconnect', 'code': 4000, 'reason': 'bye'}])

    def test_websocket_unread_messages_are_bounded(self):
        async def app(scope, receive, send):
            await receive()
            await send({'type': 'websocket.accept'})
            await asyncio.sleep(3600)  # never reads

        async def test():
            chan, t = channel(app)
            chan.data_received(w.encode_request(w.FLAG_WEBSOCKET, ENV))
            await settle()
            t.frames()
            chan.data_received(w.encode_frame(w.WS_RECEIVE, b'\x00m') * (websocket._WS_MAX_UNREAD + 10))
            await settle()
            self.assertEqual(t.frames(), [(w.WS_CLOSE, (1008, 'too many unread messages'))])
            ex = chan.queue[0]
            self.assertEqual(len(ex.inbox), websocket._WS_MAX_UNREAD + 1)
        run(test)

    def test_websocket_close_before_accept(self):
        async def app(scope, receive, send):
            await receive()
            await send({'type': 'websocket.close', 'code': 1008})

        async def test():
            chan, t = channel(app)
            chan.data_received(w.encode_request(w.FLAG_WEBSOCKET, ENV))
            await settle()
            self.assertEqual(t.frames(), [(w.WS_CLOSE, (1008, '')), (w.END, ())])
        run(test)


class PathsendTest(unittest.TestCase):

    def test_file_descriptor_goes_to_caddy(self):
        import socket
        import tempfile
        with tempfile.NamedTemporaryFile() as f:
            f.write(b'file body')
            f.flush()

            async def app(scope, receive, send):
                self.assertIn('http.response.pathsend', scope['extensions'])
                await send({'type': 'http.response.start', 'status': 200,
                            'headers': [(b'content-length', b'9')]})
                await send({'type': 'http.response.pathsend', 'path': f.name})

            async def test():
                loop = asyncio.get_running_loop()
                ours, caddy = socket.socketpair()
                ours.setblocking(False)
                worker = asgi_worker(app, loop)
                await loop.create_unix_connection(lambda: AsgiChannel(worker), sock=ours)
                caddy.sendall(w.encode_request(0, ENV))
                caddy.setblocking(False)
                block = asgi_header_block(200, [(b'content-length', b'9')])
                want = len(w.encode_headers(0, block)) + len(w.encode_file(0, -1)) + len(w.encode_end())
                data, fds = b'', []
                for _ in range(500):  # until HEADERS, FILE and END are in (5 s at most)
                    await asyncio.sleep(0.01)
                    try:
                        more, got, _, _ = socket.recv_fds(caddy, 65536, 4)
                    except BlockingIOError:
                        continue
                    data, fds = data + more, fds + got
                    if len(data) >= want:
                        break
                ftype, fields, end = w.decode_frame(data)
                self.assertEqual((ftype, fields[0]), (w.HEADERS, 0))
                ftype, fields, end = w.decode_frame(data, end)
                self.assertEqual((ftype, fields), (w.FILE, (0, -1)))
                self.assertEqual(len(fds), 1)
                self.assertEqual(os.pread(fds[0], 100, 0), b'file body')
                os.close(fds[0])
                self.assertEqual(w.decode_frame(data, end)[0], w.END)
                worker.stopping = True  # closing the channel would end the process
                caddy.close()
            run(test)


class FileLimitTest(unittest.TestCase):

    def test_soft_limit_raised_to_hard(self):
        import subprocess
        import sys
        code = ('import resource, worker_harness, caddy_wsgi.platform as p; p.raise_nofile(); '
                'print(*resource.getrlimit(resource.RLIMIT_NOFILE))')
        out = subprocess.run(['sh', '-c', 'ulimit -Sn 256 && exec "$0" -c "$1"', sys.executable, code],
                             capture_output=True, text=True, cwd=os.path.dirname(__file__), check=True).stdout
        soft, hard = out.split()
        self.assertEqual(soft, hard)


class LifespanTest(unittest.TestCase):

    def start(self, app, mode):
        loop = asyncio.new_event_loop()
        try:
            asyncio.set_event_loop(loop)  # 3.9: asyncio.Queue binds to the current loop
            worker = asgi_worker(app, loop)
            return start_lifespan(worker, mode), worker.state
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def test_state_and_failure(self):
        async def good(scope, receive, send):
            await receive()
            scope['state']['ready'] = True
            await send({'type': 'lifespan.startup.complete'})
            await receive()

        async def failing(scope, receive, send):
            await receive()
            await send({'type': 'lifespan.startup.failed', 'message': 'no database'})

        async def raising(scope, receive, send):
            raise ValueError('lifespan? never heard of it')

        self.assertEqual(self.start(good, 'auto'), (None, {'ready': True}))
        self.assertIn('no database', self.start(failing, 'auto')[0])
        self.assertIsNone(self.start(raising, 'auto')[0])
        self.assertIn('never heard of it', self.start(raising, 'on')[0])


if __name__ == '__main__':
    unittest.main()
