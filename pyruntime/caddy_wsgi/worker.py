"""The base worker class: the one boot path every worker class shares (stack dump, hooks,
app import, post_worker_init, READY, worker_exit) and the process exit when Caddy is gone.
Subclasses (sync, gevent, asgi) say how channels are served, as Gunicorn's workers do."""

import os
import socket
import sys
import time
import traceback

from .boot import load_app
from .codec import encode_ready
from .hooks import call_hook, hook, load_hooks, run_hook
from .process import boot_failed, flush_std


class WorkerInfo:
    """What hooks receive as `worker` (and as `server` in on_starting)."""

    def __init__(self, spec, config):
        self.app_spec = spec
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self.threads = config['threads']
        self.booted_at = time.time()


class Worker:
    """One worker process serving one app on the channels Caddy gave it.

    boot() is the path of a worker Caddy started: prepare, import, serve. A zygote calls
    load() once and serve() in each forked child instead."""

    def __init__(self, spec, config):
        self.spec = spec
        self.config = config
        self.hooks = None
        self.info = None
        self.app = None
        self.exit_hooks = []  # run once before the worker exits on EOF (worker_exit)
        self.dump_file = None  # where faulthandler writes the stacks (SIGUSR1, crashes)

    def boot(self, boot_sock):
        try:
            boot_sock = self.prepare(boot_sock)
            socks = [boot_sock] + [socket.socket(fileno=3 + i)
                                   for i in range(1, self.config['threads'])]
            # Without a zygote every worker is its own "server": it gets every hook.
            self.load(post_fork=True)
        except BaseException:  # SystemExit from an app import is a boot failure too
            boot_failed(boot_sock, traceback.format_exc())
        self.serve(socks)

    def prepare(self, boot_sock):
        """What must happen before the app is imported -> the boot socket to use."""
        return boot_sock

    def load(self, post_fork):
        """Stack dump, hooks module, on_starting (and post_fork), then the app."""
        if self.config['dump_fd'] is not None:
            self.install_stack_dump(self.config['dump_fd'])
        self.hooks = load_hooks(self.config['hooks'], lambda: self.dump_file)
        self.info = WorkerInfo(self.spec, self.config)
        run_hook(self.hooks, 'on_starting', self.info)
        if post_fork:
            run_hook(self.hooks, 'post_fork', self.info)
        self.app = load_app(self.spec)

    def serve(self, socks):
        """Serve the imported app on socks (channel 0 first): start, post_worker_init,
        worker_exit registered for the end, then run (which sends READY)."""
        self.start(socks)
        run_hook(self.hooks, 'post_worker_init', self.info)
        exit_hook = hook(self.hooks, 'worker_exit')
        if exit_hook is not None:
            info = self.info
            self.exit_hooks.append(lambda: call_hook('worker_exit', exit_hook, info))
        self.run(socks)

    def start(self, socks):
        """Work between the import and post_worker_init (ASGI: lifespan startup)."""

    def run(self, socks):
        raise NotImplementedError

    @staticmethod
    def ready_frame():
        return encode_ready(os.getpid(), '%d.%d.%d' % sys.version_info[:3])

    def peer_gone(self):
        """Caddy closed the channel or died: there is nobody left to serve."""
        while self.exit_hooks:
            self.exit_hooks.pop()()
        flush_std()
        os._exit(0)

    def install_stack_dump(self, fd):
        """Before Caddy kills a stuck worker it sends SIGUSR1: faulthandler then writes every
        thread's stack to fd from C, so the dump works in an infinite loop, in a long sleep,
        and while C code holds the GIL."""
        import faulthandler
        import signal
        self.dump_file = os.fdopen(fd, 'w', closefd=False)
        faulthandler.register(signal.SIGUSR1, file=self.dump_file, all_threads=True)
        # A crash (segfault in C code, abort) writes the Python stacks there too: Caddy logs
        # them with the worker's exit.
        faulthandler.enable(file=self.dump_file, all_threads=True)
