"""The fallbacks for systems without Linux's /proc and Pdeathsig, run here on Linux."""

import os
import select
import signal
import subprocess
import sys
import textwrap
import unittest

from worker_harness import RUNTIME_DIR


def _python(code, **kw):
    return subprocess.Popen([sys.executable, '-c', textwrap.dedent(code)], cwd=RUNTIME_DIR, **kw)


class ParentWatchTest(unittest.TestCase):

    def test_busy_worker_dies_with_its_parent(self):
        """A 'worker' stuck in a request (sleeping) exits soon after its parent dies."""
        r, w = os.pipe()
        parent = _python('''
            import os, subprocess, sys
            w = int(sys.argv[1])
            subprocess.Popen([sys.executable, '-c', """
            import os, sys, time
            import caddy_wsgi.platform as rt
            rt.watch_parent(interval=0.05)
            os.write(int(sys.argv[1]), b'%d\\\\n' % os.getpid())
            time.sleep(60)  # the app, busy in a request
            """, str(w)], pass_fds=[w])
            os.read(0, 1)  # until the test says so
            os._exit(0)
            '''.replace('sys.argv[1]', repr(w), 1), pass_fds=[w], stdin=subprocess.PIPE)
        os.close(w)
        try:
            ready, _, _ = select.select([r], [], [], 10)
            self.assertTrue(ready, 'the worker did not start')
            line = os.read(r, 64)
            pid = int(line.split()[0])
            parent.stdin.close()  # the parent exits
            parent.wait(5)
            # Every copy of the pipe's write end is the worker's now: EOF means it exited.
            ready, _, _ = select.select([r], [], [], 5)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                self.fail('the worker outlived its parent by 5 s')
            self.assertEqual(os.read(r, 64), b'')
        finally:
            os.close(r)
            if parent.poll() is None:
                parent.kill()
                parent.wait()


class SoftLimitTest(unittest.TestCase):

    def test_highest_soft_bisects_below_a_refused_hard_limit(self):
        import caddy_wsgi.platform as rt
        cap, infinity = 24576, 2 ** 63 - 1  # macOS: kern.maxfilesperproc, RLIM_INFINITY
        state = {}

        def setlimit(n):
            if n > cap:
                raise ValueError('not allowed to raise maximum limit')
            state['soft'] = n
        self.assertEqual(rt.highest_soft(setlimit, 256, infinity), cap)
        self.assertEqual(state['soft'], cap)
        self.assertEqual(rt.highest_soft(setlimit, 256, 4096), 4096)  # Linux, FreeBSD


class CloseInheritedTest(unittest.TestCase):

    def test_without_proc_the_range_is_closed(self):
        code = '''
            import os
            import caddy_wsgi.platform as rt
            keep, leaked = os.open(os.devnull, os.O_RDONLY), os.open(os.devnull, os.O_RDONLY)
            low = max(keep, leaked)
            rt.close_inherited(low, fd_dir='/nonexistent')
            for fd, want in ((min(keep, leaked), True), (low, False)):
                try:
                    os.fstat(fd)
                    alive = True
                except OSError:
                    alive = False
                assert alive == want, (fd, alive)
            print('ok')
            '''
        out = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=RUNTIME_DIR,
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.stdout.strip(), 'ok', out.stderr)


if __name__ == '__main__':
    unittest.main()
