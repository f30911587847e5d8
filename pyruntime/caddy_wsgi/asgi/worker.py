"""The asgi worker class: every channel is served by one asyncio event loop (uvloop when
the app's environment has it), with lifespan startup before READY."""

import asyncio
import signal
import sys
import traceback

from ..process import boot_failed
from ..worker import Worker
from .channel import AsgiChannel
from .lifespan import start_lifespan


class AsgiWorker(Worker):
    """What every channel of an ASGI worker shares: the app, the loop, the lifespan."""

    def __init__(self, spec, config):
        Worker.__init__(self, spec, config)
        self.loop = None
        self.lifespan = None  # Lifespan, when the app supports it
        self.state = {}  # lifespan state, copied into every scope
        self.stopping = False

    def start(self, socks):
        try:
            import uvloop  # faster socket calls when the app's environment has it
            loop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        if self.config['lifespan'] != 'off':
            failure = start_lifespan(self, self.config['lifespan'])
            if failure is not None:
                boot_failed(socks[0], failure)

    def run(self, socks):
        socks[0].setblocking(True)
        socks[0].sendall(self.ready_frame())
        loop = self.loop
        for sock in socks:
            sock.setblocking(False)
            loop.run_until_complete(loop.create_unix_connection(lambda: AsgiChannel(self), sock=sock))
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.run_forever()

    def stop(self):
        """Caddy closed a channel or sent SIGTERM: run lifespan shutdown, then exit."""
        if self.stopping:
            return
        self.stopping = True
        self.loop.create_task(self._shutdown())

    async def _shutdown(self):
        if self.lifespan is not None:
            try:
                await self.lifespan.shutdown()
            except Exception:
                sys.stderr.write('lifespan shutdown failed:\n' + traceback.format_exc())
        self.peer_gone()  # worker_exit runs there: after lifespan shutdown
