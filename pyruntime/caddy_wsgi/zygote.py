"""The zygote (preload): import the app once, then fork a worker for each FORK frame from
Caddy and report the exits of the children. A child becomes the worker the zygote holds
(its class, hooks and app), so it serves without importing anything."""

import gc
import os
import select
import signal
import socket
import struct
import sys
import traceback

from .codec import EXITED, FORK, FORK_FDS, FORKED, HEAD
from .hooks import run_hook
from .platform import dup_high
from .process import boot_failed, flush_std, violation
from .worker import WorkerInfo

_FORK_HEAD = struct.Struct('>IBI')
_FORK_FD_BATCH = 250
_EXITED = struct.Struct('>IBIi')
_FORKED = struct.Struct('>IBI')


class Zygote:
    """Forks workers of one imported app on Caddy's control channel (fd 3)."""

    def __init__(self, worker, control):
        self.worker = worker
        self.config = worker.config
        self.control = control

    def run(self):
        """Import the app, then fork a worker for each FORK frame and report exits. The
        zygote starts no thread, so forking it is safe."""
        control = self.control
        try:
            self.worker.load(post_fork=False)
        except BaseException:
            boot_failed(control, traceback.format_exc())
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd fires
        if hasattr(gc, 'freeze'):
            gc.freeze()  # keep imported objects out of GC scans: fewer CoW copies
        control.setblocking(True)
        control.sendall(self.worker.ready_frame())
        while True:
            readable, _, _ = select.select([control, wake_r], [], [])
            if wake_r in readable:
                os.read(wake_r, 4096)
                self.reap()
            if control in readable:
                fds = self.recv_fork()
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    self.become_worker(fds, (wake_r, wake_w))
                for fd in fds:
                    os.close(fd)
                control.sendall(_FORKED.pack(4, FORKED, pid))

    def recv_fork(self):
        """Read one FORK frame and its descriptors; EOF means Caddy is gone."""
        control = self.control
        want = self.config['threads'] + 3
        fds = []
        head, expect = _FORK_HEAD, FORK
        while True:
            try:
                msg, batch, _, _ = socket.recv_fds(control, head.size, _FORK_FD_BATCH)
            except OSError:
                self.worker.peer_gone()
            fds += batch
            if not msg:
                self.worker.peer_gone()
            if len(msg) != head.size:
                violation('short FORK frame')
            fields = head.unpack(msg)
            if fields[1] != expect or fields[0] != head.size - 5 or (expect == FORK and fields[2] != want):
                for fd in fds:
                    os.close(fd)
                violation('bad FORK frame: type 0x%02x, %d fds' % (fields[1], len(fds)))
            if len(fds) >= want:
                break
            head, expect = HEAD, FORK_FDS  # the next batch of descriptors
        if len(fds) != want:
            for fd in fds:
                os.close(fd)
            violation('FORK brought %d descriptors, want %d' % (len(fds), want))
        return fds

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.control.sendall(_EXITED.pack(8, EXITED, pid, status))

    def become_worker(self, fds, zygote_fds):
        """In the forked child: put the channels, dump pipe and output pipes in place, then
        serve. fds = channels..., dump, stdout, stderr (PROTOCOL.md)."""
        worker = self.worker
        try:
            os.setpgid(0, 0)  # its own group, so Caddy can kill it and its children alone
            moved = [dup_high(fd) for fd in fds]
            self.control.close()  # through its object, which would otherwise close fd 3 later
            for fd in list(fds) + list(zygote_fds):
                os.close(fd)
            threads = self.config['threads']
            for i, fd in enumerate(moved[:threads]):
                os.dup2(fd, 3 + i)
            os.dup2(moved[threads], 3 + threads)
            os.dup2(moved[threads + 1], 1)
            os.dup2(moved[threads + 2], 2)
            for fd in moved:
                os.close(fd)
            socks = [socket.socket(fileno=3 + i) for i in range(threads)]
            worker.install_stack_dump(3 + threads)
            worker.info = WorkerInfo(worker.spec, self.config)
            run_hook(worker.hooks, 'post_fork', worker.info)
        except BaseException:
            try:
                sys.stderr.write('caddy-wsgi: forked worker failed to start:\n' + traceback.format_exc())
            finally:
                flush_std()
                os._exit(3)
        try:
            worker.serve(socks)
        finally:
            flush_std()
            os._exit(1)
