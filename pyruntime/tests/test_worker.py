"""End-to-end: a real worker subprocess, with this test playing Caddy's side."""

import hashlib
import json
import mmap
import os
import shutil
import sys
import tempfile
import time
import unittest

from worker_harness import HERE, Worker, w

PAYLOAD = bytes(range(256)) * 40


class WorkerTestCase(unittest.TestCase):
    """Each test gets a fresh worker whose cwd is a temp dir holding wsgi_apps.py."""

    spec = 'wsgi_apps:router'
    threads = 1

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='caddy-wsgi-test-')
        shutil.copy(os.path.join(HERE, 'wsgi_apps.py'), cls.dir)
        with open(os.path.join(cls.dir, 'payload.bin'), 'wb') as f:
            f.write(PAYLOAD)
        with open(os.path.join(cls.dir, 'broken.py'), 'w') as f:
            f.write('import os\nimport nonexistent_module_xyz\n')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.worker = None
        self.workers = []

    def tearDown(self):
        for worker in self.workers:
            worker.dispose()

    def start(self, spec=None, threads=None, **config):
        self.worker = Worker(self.dir, spec or self.spec, threads or self.threads, **config)
        self.workers.append(self.worker)
        return self.worker

    def started(self, **kw):
        worker = self.start(**kw)
        worker.ready()
        return worker.conn

    def marker(self, name):
        """A fresh marker file name; the app's close() appends to it."""
        path = os.path.join(self.dir, name)
        if os.path.exists(path):
            os.unlink(path)
        return name

    def marked(self, name):
        path = os.path.join(self.dir, name)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return f.read().split()

    def assertError(self, frames, *needles):
        self.assertEqual(frames[-1][0], w.ERROR, frames)
        for needle in needles:
            self.assertIn(needle, frames[-1][1][0])
        return frames[-1][1][0]


class BootTest(WorkerTestCase):

    def test_ready(self):
        worker = self.start()
        info = worker.ready()
        self.assertEqual(info['pid'], worker.pid)
        self.assertEqual(info['python'], '%d.%d.%d' % sys.version_info[:3])

    def test_boot_error(self):
        worker = self.start(spec='broken')
        ftype, (text,) = worker.conn.read_frame()
        self.assertEqual(ftype, w.BOOT_ERROR)
        self.assertIn('Traceback', text)
        self.assertIn('nonexistent_module_xyz', text)
        self.assertEqual(worker.wait(), 3)
        self.assertIn('nonexistent_module_xyz', worker.stderr())

    def test_bad_spec_and_not_callable(self):
        for spec, needle in [('wsgi_apps:missing', "no attribute 'missing'"),
                             ('wsgi_apps:not_callable', 'not callable'),
                             ('wsgi_apps:make_app(open)', 'literals')]:
            worker = self.start(spec=spec)
            ftype, (text,) = worker.conn.read_frame()
            self.assertEqual(ftype, w.BOOT_ERROR, spec)
            self.assertIn(needle, text)
            self.assertEqual(worker.wait(), 3)
            worker.close()

    def test_default_application_and_factory(self):
        for spec, body in [('wsgi_apps', b'hello'), ('wsgi_apps:make_app()', b'factory'),
                           ("wsgi_apps:make_app('ab', times=2)", b'abab'),
                           ('wsgi_apps:ns.inner.app', b'dotted')]:
            conn = self.started(spec=spec)
            frames = conn.get('/')
            self.assertEqual(frames[-1][1][-1], body, spec)
            self.worker.close()

    def test_process_setup(self):
        conn = self.started(pythonpath=['/nonexistent-extra'])
        (_, fields), = conn.get('/env')
        env = json.loads(fields[3])
        self.assertEqual(env['argv'], ['caddy-wsgi-worker'])
        self.assertEqual(env['path0'][:2], [os.path.realpath(self.dir), '/nonexistent-extra'])
        self.assertEqual(env['wsgi.version'], [1, 0])
        self.assertIs(env['wsgi.multithread'], False)
        self.assertIs(env['wsgi.multiprocess'], False)
        self.assertIs(env['wsgi.run_once'], False)
        self.assertIs(env['wsgi.input_terminated'], True)
        self.assertTrue(env['errors_is_stderr'])
        self.assertEqual(env['file_wrapper'], 'FileWrapper')
        self.assertEqual(env['SERVER_SOFTWARE'], 'caddy-wsgi/test')
        self.assertEqual(env['input_type'], 'BytesIO')
        self.assertEqual(env['PATH_INFO'], '/env')


class ResponseTest(WorkerTestCase):

    def test_fast_path_is_one_frame(self):
        conn = self.started()
        frames = conn.get('/fast')
        self.assertEqual(frames, [(w.HEADERS, (w.FLAG_FINAL, '200 OK',
                                               [('Content-Type', 'text/plain'), ('X-A', 'b')],
                                               b'hello'))])

    def test_early_hints(self):
        conn = self.started()
        frames = conn.get('/hints')
        self.assertEqual(frames[:2], [
            (w.INFORMATIONAL, ('103', [('Link', '</a.css>; rel=preload; as=style'),
                                       ('Link', '</b.js>; rel=preload')])),
            (w.INFORMATIONAL, ('103', []))])
        self.assertEqual(frames[2], (w.HEADERS, (0, '200 OK', [('Content-Type', 'text/plain')],
                                                b"invalid value for early hint header 'Link'|RuntimeError")))
        self.assertEqual(frames[3:], [(w.INFORMATIONAL, ('103', [('Link', '</late.css>')])),
                                      (w.BODY, (b'!',)), (w.END, ())])

    def test_iterated(self):
        conn = self.started()
        m = self.marker('iter')
        frames = conn.get('/iter', HTTP_X_MARKER=m)
        self.assertEqual(frames, [
            (w.HEADERS, (0, '200 OK', [('Content-Type', 'text/plain')], b'one')),
            (w.BODY, (b'two',)), (w.BODY, (b'three',)), (w.END, ())])
        self.assertEqual(self.marked(m), ['closed'])

    def test_empty_iterable(self):
        conn = self.started()
        m = self.marker('empty')
        frames = conn.get('/empty', HTTP_X_MARKER=m)
        self.assertEqual(frames, [(w.HEADERS, (w.FLAG_FINAL, '204 No Content', [], b''))])
        self.assertEqual(self.marked(m), ['closed'])

    def test_write(self):
        conn = self.started()
        frames = conn.get('/write')
        self.assertEqual([f[0] for f in frames], [w.HEADERS, w.BODY, w.BODY, w.END])
        self.assertEqual(frames[0][1][3], b'w1')
        self.assertEqual([f[1][0] for f in frames[1:3]], [b'w2', b'it'])

    def test_exc_info_replaces_headers(self):
        conn = self.started()
        frames = conn.get('/excinfo')
        self.assertEqual(frames, [(w.HEADERS, (w.FLAG_FINAL, '500 Oops',
                                               [('Content-Type', 'text/html')], b'oops'))])

    def test_exc_info_after_headers_reraises(self):
        conn = self.started()
        frames = conn.get('/excinfo-after')
        self.assertEqual(frames[0][0], w.HEADERS)
        self.assertError(frames, 'ValueError: late-marker')

    def test_start_response_twice(self):
        conn = self.started()
        self.assertError(conn.get('/twice'), 'AssertionError', 'twice')

    def test_str_body(self):
        conn = self.started()
        m = self.marker('str')
        frames = conn.get('/str', HTTP_X_MARKER=m)
        self.assertEqual(len(frames), 1)
        self.assertError(frames, 'must be bytes, not str')
        self.assertEqual(self.marked(m), ['closed'])

    def test_bad_headers(self):
        conn = self.started()
        m = self.marker('latin')
        self.assertError(conn.get('/nul-header'), "'X-Bad'", 'NUL')
        self.assertError(conn.get('/latin-header', HTTP_X_MARKER=m), "'X-Euro'", 'latin-1')
        self.assertEqual(self.marked(m), ['closed'])
        self.assertError(conn.get('/headers-tuple'), 'must be a list')
        self.assertError(conn.get('/bad-status'), 'status', 'bytes')

    def test_app_exception(self):
        conn = self.started()
        text = self.assertError(conn.get('/raise'), 'Traceback', 'RuntimeError: boom-marker')
        self.assertIn('wsgi_apps.py', text)
        # One log entry per failure: the traceback goes to Caddy, not also to stderr.
        self.assertNotIn('boom-marker', self.worker.stderr())

    def test_exception_during_iteration(self):
        conn = self.started()
        m = self.marker('raise-iter')
        frames = conn.get('/raise-iter', HTTP_X_MARKER=m)
        self.assertEqual(frames[0], (w.HEADERS, (0, '200 OK', [('Content-Type', 'text/plain')],
                                                 b'first')))
        self.assertError(frames, 'iter-boom-marker')
        self.assertEqual(self.marked(m), ['closed'])

    def test_close_raising_after_body_is_a_log(self):
        conn = self.started()
        m = self.marker('raise-close')
        frames = conn.get('/raise-close', HTTP_X_MARKER=m)
        self.assertEqual([f[0] for f in frames], [w.HEADERS, w.LOG, w.END])
        self.assertEqual(frames[1][1][0], w.LOG_WARNING)
        self.assertIn('close-failed-marker', frames[1][1][1])
        self.assertEqual(self.marked(m), ['closed'])

    def test_no_start_response(self):
        conn = self.started()
        m = self.marker('no-start')
        self.assertError(conn.get('/no-start', HTTP_X_MARKER=m), 'start_response')
        self.assertEqual(self.marked(m), ['closed'])

    def test_channel_survives_errors(self):
        conn = self.started()
        for path in ['/raise', '/fast', '/twice', '/iter', '/str', '/write', '/fast']:
            frames = conn.get(path)
            self.assertIn(frames[-1][0], (w.ERROR, w.END, w.HEADERS), path)
        self.assertEqual(frames[0][1][3], b'hello')

    def test_large_bodies_split_at_frame_limit(self):
        conn = self.started()
        n = w.MAX_PAYLOAD + 1000
        frames = conn.get('/big', QUERY_STRING=str(n))
        self.assertEqual([f[0] for f in frames], [w.HEADERS, w.BODY, w.END])
        self.assertEqual(len(frames[0][1][3]) + len(frames[1][1][0]), n)
        frames = conn.get('/big-iter', QUERY_STRING=str(n))
        self.assertEqual([f[0] for f in frames], [w.HEADERS, w.BODY, w.BODY, w.END])
        self.assertEqual(len(frames[0][1][3]) + len(frames[1][1][0]), n)
        self.assertEqual(frames[2][1][0], b'z')
        frames = conn.get('/big', QUERY_STRING='100000')
        self.assertEqual([f[0] for f in frames], [w.HEADERS])
        self.assertEqual(frames[0][1][3], b'x' * 100000)

    def test_validator_wrapped_app(self):
        conn = self.started()
        frames = conn.get('/validate', body=b'posted', method='POST')
        self.assertEqual([f[0] for f in frames], [w.HEADERS, w.BODY, w.BODY, w.END])
        self.assertEqual(b''.join([frames[0][1][3]] + [f[1][0] for f in frames[1:3]]),
                         b'w:v:posted')
        frames = conn.get('/validate-file')
        self.assertEqual(frames[-1][0], w.END)
        body = frames[0][1][3] + b''.join(f[1][0] for f in frames[1:-1])
        self.assertEqual(body, PAYLOAD)
        self.assertEqual(self.worker.close(), 0)
        err = self.worker.stderr()
        self.assertIn('validate-app-log', err)
        self.assertNotIn('Error', err)
        self.assertNotIn('Warning', err)


class InputTest(WorkerTestCase):

    def test_buffered_input(self):
        conn = self.started()
        frames = conn.get('/stream-echo', body=b'first line\nabcde\nsecond\nthird')
        self.assertEqual(json.loads(frames[0][1][3]), {
            'line1': 'first line\n', 'part': 'abc', 'limited': 'de', 'rest': ['\n', 'second\n',
                                                                              'third'],
            'eof': '', 'eof2': ''})

    def test_stream_input(self):
        conn = self.started()
        frames = conn.get('/stream-echo', body=b'first line\nabcde\nsecond\nthird', stream=True,
                          chunk=4)
        reads = [f for f in frames if f[0] == w.READ]
        self.assertTrue(reads)
        self.assertTrue(all(f[1][0] >= 65536 for f in reads))
        self.assertEqual(json.loads(frames[-1][1][3]), {
            'line1': 'first line\n', 'part': 'abc', 'limited': 'de', 'rest': ['\n', 'second\n',
                                                                              'third'],
            'eof': '', 'eof2': ''})

    def test_stream_read_all_and_readlines(self):
        conn = self.started()
        body = os.urandom(300000)
        frames = conn.get('/read-all', body=body, stream=True, chunk=50000)
        self.assertEqual(frames[-1][1][3], b'%d:%s' % (len(body), body[:16]))
        frames = conn.get('/readlines', body=b'a\nb\n\nc', stream=True, chunk=1)
        self.assertEqual(json.loads(frames[-1][1][3]), ['a\n', 'b\n', '\n', 'c'])
        frames = conn.get('/read-types', body=b'xyz', stream=True)
        self.assertEqual(frames[-1][1][3], b'TypeError:xyz')
        frames = conn.get('/read-all', body=b'', stream=True)
        self.assertEqual(frames[-1][1][3], b'0:')

    def test_request_larger_than_receive_buffer(self):
        conn = self.started()
        body = os.urandom(3 * 1024 * 1024 + 3)
        frames = conn.get('/read-all', body=body)
        self.assertEqual(frames[-1][1][3], b'%d:%s' % (len(body), body[:16]))
        frames = conn.get('/read-all', body=body, stream=True, chunk=1024 * 1024)
        self.assertEqual(frames[-1][1][3], b'%d:%s' % (len(body), body[:16]))

    def test_aborted_upload(self):
        conn = self.started()
        frames = conn.get('/abort', body=b'never', stream=True, abort=True)
        self.assertEqual(frames[-1][1][3], b'OSError:ClientDisconnected')


@unittest.skipUnless(hasattr(os, 'memfd_create'), 'the response ring needs os.memfd_create')
class RingTest(WorkerTestCase):
    """The response ring (PROTOCOL.md): blocks of 16 KiB and more cross in shared memory."""

    def map_ring(self, frame):
        self.assertEqual(frame[0], w.RING)
        slots, size, inbound, fd = frame[1]
        self.assertEqual(inbound, 256 * 1024)
        try:
            ring = mmap.mmap(fd, 4096 + slots * size + inbound)
        finally:
            os.close(fd)
        self.addCleanup(ring.close)
        return ring, slots, size

    def check_blocks(self, frames, ring, size, first=0):
        """Each RING_BODY or BODY frame holds block i (bytes of value first+i)."""
        i = first
        for ftype, fields in frames:
            if ftype == w.RING_BODY:
                slot, n = fields
                self.assertNotEqual(ring[4 * slot:4 * slot + 4], bytes(4), 'slot %d not marked' % slot)
                data = ring[4096 + slot * size:4096 + slot * size + n]
            elif ftype == w.BODY:
                data = fields[0]
            else:
                continue
            self.assertEqual(data, bytes([i % 256]) * len(data), 'block %d' % i)
            i += 1
        return i - first

    def test_large_blocks_cross_in_the_ring(self):
        conn = self.started(ring=True)
        frames = conn.get('/blocks', QUERY_STRING='3,65536')
        self.assertEqual([f[0] for f in frames],
                         [w.RING, w.HEADERS, w.RING_BODY, w.RING_BODY, w.RING_BODY, w.END])
        self.assertEqual(frames[1][1], (0, '200 OK', [('Content-Type', 'text/plain')], b''))
        ring, slots, size = self.map_ring(frames[0])
        self.assertEqual((slots, size), (32, 65536))
        self.assertEqual(self.check_blocks(frames, ring, size), 3)
        self.assertEqual(len({f[1][0] for f in frames if f[0] == w.RING_BODY}), 3)

        # Slots Caddy has not freed are never reused: with 3 held, 29 more blocks fit and
        # the rest go through the socket, in order.
        frames = conn.get('/blocks', QUERY_STRING='40,65536')
        types = [f[0] for f in frames]
        self.assertNotIn(w.RING, types)  # one ring per channel
        self.assertEqual(types.count(w.RING_BODY), 29)
        self.assertEqual(types.count(w.BODY) + (1 if frames[0][1][3] else 0), 11)
        self.assertEqual(self.check_blocks(frames, ring, size), 40 - (1 if frames[0][1][3] else 0))
        used = [f[1][0] for f in frames if f[0] == w.RING_BODY]
        self.assertEqual(sorted(used), list(range(3, 32)))

        # Freed slots are used again; a body over a slot spans several; small blocks and
        # the final frame keep to the socket.
        ring[:4 * slots] = bytes(4 * slots)
        frames = conn.get('/big', QUERY_STRING='100000')
        self.assertEqual([(f[0], f[1][1] if f[0] == w.RING_BODY else None) for f in frames],
                         [(w.HEADERS, None), (w.RING_BODY, 65536), (w.RING_BODY, 34464), (w.END, None)])
        data = b''.join(ring[4096 + f[1][0] * size:4096 + f[1][0] * size + f[1][1]]
                        for f in frames if f[0] == w.RING_BODY)
        self.assertEqual(data, b'x' * 100000)
        self.assertEqual(frames[0][1][2], [('Content-Type', 'text/plain'), ('Content-Length', '100000')])
        frames = conn.get('/blocks', QUERY_STRING='2,1000')
        self.assertNotIn(w.RING_BODY, [f[0] for f in frames])

    def test_upload_through_the_inbound_area(self):
        conn = self.started(ring=True)
        body = bytes(range(256)) * 3000  # 768,000 bytes: several READs
        conn.request('/digest', body, stream=True, method='POST')
        ftype, fields = conn.read_frame()
        ring, slots, size = self.map_ring((ftype, fields))  # made before the first READ
        inbound = 4096 + slots * size
        sent = 0
        while True:
            ftype, fields = conn.read_frame()
            if ftype != w.READ:
                break
            n = min(fields[0], 256 * 1024, len(body) - sent, 100000)
            ring[inbound:inbound + n] = body[sent:sent + n]
            sent += n
            conn.send(w.encode_data_ring(w.FLAG_EOF if sent == len(body) else 0, n))
        self.assertEqual(ftype, w.HEADERS)
        self.assertEqual(fields[3], b'%d:%s' % (len(body), hashlib.sha256(body).hexdigest().encode()))

    def test_data_ring_past_the_read_is_a_violation(self):
        conn = self.started(ring=True)
        conn.request('/digest', b'x' * 1000, stream=True, method='POST')
        self.assertEqual(conn.read_frame()[0], w.RING)
        ftype, fields = conn.read_frame()
        self.assertEqual(ftype, w.READ)
        conn.send(w.encode_data_ring(0, fields[0] + 1))
        self.assertEqual(self.worker.wait(), 4)

    def test_no_ring_unless_caddy_maps_it(self):
        conn = self.started()
        frames = conn.get('/blocks', QUERY_STRING='2,65536')
        self.assertNotIn(w.RING, [f[0] for f in frames])
        self.assertNotIn(w.RING_BODY, [f[0] for f in frames])


class StreamingTest(WorkerTestCase):

    def test_file_frame_passes_fd(self):
        conn = self.started()
        frames = conn.get('/file')
        self.assertEqual([f[0] for f in frames], [w.HEADERS, w.FILE, w.END])
        self.assertEqual(frames[0][1], (0, '200 OK',
                                        [('Content-Type', 'application/octet-stream')], b''))
        offset, count, fd = frames[1][1]
        try:
            self.assertEqual((offset, count), (5, -1))
            self.assertEqual(os.pread(fd, len(PAYLOAD), offset), PAYLOAD[5:])
        finally:
            os.close(fd)

    def test_file_wrapper_without_fd_is_iterated(self):
        conn = self.started()
        frames = conn.get('/file-iter')
        self.assertEqual([f[0] for f in frames], [w.HEADERS, w.BODY, w.BODY, w.END])
        self.assertEqual(frames[0][1][3], b'abcd')
        self.assertEqual([f[1][0] for f in frames[1:3]], [b'efgh', b'ij'])

    def test_cancel_stops_infinite_generator(self):
        conn = self.started()
        m = self.marker('infinite')
        conn.request('/infinite', HTTP_X_MARKER=m)
        self.assertEqual(conn.read_frame()[0], w.HEADERS)
        self.assertEqual(conn.read_frame()[0], w.BODY)
        conn.send(w.encode_cancel())
        while True:  # Caddy discards frames until the exchange ends
            ftype, _ = conn.read_frame()
            if ftype != w.BODY:
                break
        self.assertEqual(ftype, w.END)
        self.assertEqual(self.marked(m), ['closed'])
        self.assertEqual(conn.get('/fast')[0][1][3], b'hello')

    def test_cancel_stops_write_loop(self):
        conn = self.started()
        m = self.marker('write-forever')
        conn.request('/write-forever', HTTP_X_MARKER=m)
        self.assertEqual(conn.read_frame()[0], w.HEADERS)
        conn.send(w.encode_cancel())
        while True:
            ftype, _ = conn.read_frame()
            if ftype != w.BODY:
                break
        self.assertIn(ftype, (w.END, w.ERROR))
        self.assertEqual(self.marked(m), ['write-raised'])

    def test_idle_cancel_and_data_are_ignored(self):
        conn = self.started()
        conn.send(w.encode_cancel() + w.encode_data(w.FLAG_EOF, b'late'))
        self.assertEqual(conn.get('/fast')[0][1][3], b'hello')
        conn.send(w.encode_cancel())  # after the response: belongs to the finished exchange
        self.assertEqual([f[0] for f in conn.get('/iter')], [w.HEADERS, w.BODY, w.BODY, w.END])


class ProcessTest(WorkerTestCase):

    def test_two_threads_serve_concurrently(self):
        worker = self.start(threads=2)
        worker.ready()
        t0 = time.monotonic()
        for conn in worker.conns:
            conn.request('/slow')
        for conn in worker.conns:
            self.assertEqual(conn.response()[0][1][3], b'slow')
        self.assertLess(time.monotonic() - t0, 0.55)  # serial would take 0.6 s
        env = json.loads(worker.conns[1].get('/env')[0][1][3])
        self.assertIs(env['wsgi.multithread'], True)

    def test_eof_exits(self):
        worker = self.start()
        worker.ready()
        worker.conn.get('/fast')
        worker.socks[0].close()
        self.assertEqual(worker.wait(5), 0)

    def test_eof_on_any_channel_exits(self):
        worker = self.start(threads=3)
        worker.ready()
        worker.socks[2].close()
        self.assertEqual(worker.wait(5), 0)

    def test_protocol_violations_exit_4(self):
        bad = [w.frame_head(0x7f, 0), w.frame_head(w.BODY, 1) + b'x',
               w.frame_head(w.REQUEST, w.MAX_PAYLOAD + 1),
               w.encode_frame(w.REQUEST, b'\0\0\0\0\x05ab')]
        for frame in bad:
            worker = self.start()
            worker.ready()
            worker.conn.send(frame)
            self.assertEqual(worker.wait(5), 4, frame)
            self.assertIn('protocol violation', worker.stderr())
            worker.close()

    def test_oversized_data_is_a_violation(self):
        worker = self.start()
        worker.ready()
        worker.conn.request('/read-all', stream=True)
        ftype, (n,) = worker.conn.read_frame()
        self.assertEqual(ftype, w.READ)
        worker.conn.send(w.encode_data(0, b'x' * (n + 1)))
        self.assertEqual(worker.wait(5), 4)

    def test_stdin_is_devnull_and_stdout_line_buffered(self):
        path = os.path.join(self.dir, 'stdio_app.py')
        with open(path, 'w') as f:
            f.write('import sys, os\n'
                    'def application(environ, start_response):\n'
                    '    print("printed-line")\n'
                    '    start_response("200 OK", [])\n'
                    '    return [repr((sys.stdin.read(), os.readlink("/proc/self/fd/0")'
                    ' if os.path.exists("/proc/self/fd/0") else "/dev/null")).encode()]\n')
        conn = self.started(spec='stdio_app')
        body = conn.get('/')[0][1][3]
        self.assertEqual(body, repr(('', '/dev/null')).encode())
        self.assertIn('printed-line', self.worker.stdout())  # flushed without exiting


if __name__ == '__main__':
    unittest.main()
