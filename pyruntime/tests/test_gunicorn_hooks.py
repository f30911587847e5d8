"""A Gunicorn config file as the hooks module: its hooks get Gunicorn's signatures."""

import os
import shutil
import tempfile
import unittest

from worker_harness import base_environ
from caddy_wsgi import hooks as w

CONFIG = '''
import os
workers = 3
loglevel = "warning"
calls = []

def on_starting(server):
    calls.append(("on_starting", server.pid, server.cfg.workers))

def post_fork(server, worker):
    calls.append(("post_fork", server.pid, worker.pid))

def post_worker_init(worker):
    calls.append(("post_worker_init", worker.pid, worker.log.name, worker.log.level))

def pre_request(worker, req):
    calls.append(("pre_request", worker.pid, req.method, req.path, req.query, req.uri,
                  req.version, dict(req.headers).get("X-TEST")))

def post_request(worker, req, environ):
    calls.append(("post_request", req.path, environ["REQUEST_METHOD"]))

def worker_exit(server, worker):
    calls.append(("worker_exit", worker.pid, server.cfg.no_such_setting))
'''


class Info:
    app_spec = 'app:app'
    threads = 1
    booted_at = 0.0

    def __init__(self):
        self.pid, self.ppid = os.getpid(), os.getppid()


class GunicornHooksTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='caddy-wsgi-gconf-')
        self.path = os.path.join(self.dir, 'gunicorn.conf.py')
        with open(self.path, 'w') as f:
            f.write(CONFIG)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_signatures(self):
        hooks = w.load_hooks(self.path)
        calls = __import__('sys').modules['__config__'].calls
        info = Info()
        pid = os.getpid()
        w.run_hook(hooks, 'on_starting', info)
        w.run_hook(hooks, 'post_fork', info)
        w.run_hook(hooks, 'post_worker_init', info)
        env = base_environ('/items', QUERY_STRING='a=1', HTTP_X_TEST='yes', RAW_URI='/items?a=1')
        w.hook(hooks, 'pre_request')(env)
        w.hook(hooks, 'post_request')(env, '404 Not Found')
        w.run_hook(hooks, 'worker_exit', info)
        self.assertEqual(calls, [
            ('on_starting', pid, 3),
            ('post_fork', pid, pid),
            ('post_worker_init', pid, 'gunicorn.error', 30),
            ('pre_request', pid, 'GET', '/items', 'a=1', '/items?a=1', (1, 1), 'yes'),
            ('post_request', '/items', 'GET'),
            ('worker_exit', pid, None),
        ])
        self.assertIsNone(w.hook(hooks, 'worker_abort'))

    def test_undefined_hooks_absent(self):
        with open(self.path, 'w') as f:
            f.write('workers = 2\n')
        hooks = w.load_hooks('file:' + self.path)
        for name in ('on_starting', 'post_fork', 'pre_request', 'post_request', 'worker_exit'):
            self.assertIsNone(w.hook(hooks, name), name)
        # post_worker_init always exists (it keeps the worker for pre_request) and is harmless.
        w.run_hook(hooks, 'post_worker_init', Info())

    def test_response_and_arity(self):
        r = w.GunicornResponse('201 Created')
        self.assertEqual((r.status, r.status_code), ('201 Created', 201))
        self.assertEqual(w.arity(lambda a, b: 0, 4), 2)
        self.assertEqual(w.arity(lambda a, b, c, d, e=1: 0, 4), 4)
        self.assertEqual(w.arity(lambda *a: 0, 4), 4)


if __name__ == '__main__':
    unittest.main()
