"""The in-memory importer the bootstrap installs: modules, packages and traceback lines
come from the bundle, in the worker and in a child it forks."""

import json
import subprocess
import sys
import tempfile
import textwrap
import unittest

from worker_harness import BOOTSTRAP, bundle

# The bootstrap up to the call of main: read the bundle, install the importer.
INSTALL = BOOTSTRAP.split('from caddy_wsgi.boot import main')[0]

PROBE = INSTALL + textwrap.dedent('''
    import json, os, traceback
    import caddy_wsgi, caddy_wsgi.asgi, caddy_wsgi.codec as codec
    try:
        codec.check_header(0, 0xEE)
    except codec.ProtocolError:
        tb = traceback.format_exc()
    pid = os.fork()
    if pid == 0:  # a forked child (a zygote's worker) imports what its parent did not
        import caddy_wsgi.zygote
        os._exit(0 if caddy_wsgi.zygote.__spec__.loader is codec.__spec__.loader else 1)
    print(json.dumps({
        'file': codec.__file__, 'pkg_file': caddy_wsgi.__file__,
        'path': caddy_wsgi.__path__, 'asgi_path': caddy_wsgi.asgi.__path__,
        'origin': codec.__spec__.origin, 'package': caddy_wsgi.__spec__.loader.is_package('caddy_wsgi'),
        'tb': tb, 'child': os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]),
    }))
''')


class ImporterTest(unittest.TestCase):

    def test_modules_come_from_the_bundle(self):
        with tempfile.TemporaryDirectory() as cwd:  # no caddy_wsgi on disk here
            out = subprocess.run([sys.executable, '-c', PROBE], input=bundle(), cwd=cwd,
                                 capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        got = json.loads(out.stdout)
        self.assertEqual(got['file'], 'caddy_wsgi/codec.py')
        self.assertEqual(got['origin'], 'caddy_wsgi/codec.py')
        self.assertEqual(got['pkg_file'], 'caddy_wsgi/__init__.py')
        self.assertEqual(got['path'], ['caddy_wsgi'])
        self.assertEqual(got['asgi_path'], ['caddy_wsgi/asgi'])
        self.assertTrue(got['package'])
        self.assertEqual(got['child'], 0)
        # linecache found the source through get_source: the traceback shows the line.
        self.assertIn('File "caddy_wsgi/codec.py"', got['tb'])
        self.assertIn("raise ProtocolError('unknown frame type", got['tb'])


if __name__ == '__main__':
    unittest.main()
