"""The ASGI lifespan protocol: startup before READY, shutdown when the worker exits."""

import asyncio
import sys
import traceback

from .exchange import ASGI_VERSION


class Lifespan:
    """The ASGI lifespan protocol for one worker: startup before READY, shutdown at exit."""

    def __init__(self, app, state, loop):
        self.app = app
        self.loop = loop
        self.state = state
        self.inbox = asyncio.Queue()
        self.answer = None  # future: None (complete) or a message (failed)
        self.task = None
        self.error = None  # the traceback if the app raised
        self.answered = False  # the app sent a lifespan message

    async def _main(self):
        scope = {'type': 'lifespan', 'asgi': ASGI_VERSION, 'state': self.state}
        try:
            await self.app(scope, self.inbox.get, self._send)
        except BaseException:
            self.error = traceback.format_exc()
        finally:
            if self.answer is not None and not self.answer.done():
                self.answer.set_result(self.error or 'the app returned without answering')

    async def _send(self, message):
        kind = message['type']
        if kind not in ('lifespan.startup.complete', 'lifespan.startup.failed',
                        'lifespan.shutdown.complete', 'lifespan.shutdown.failed'):
            raise RuntimeError('unexpected ASGI lifespan message %r' % kind)
        self.answered = True
        if self.answer is not None and not self.answer.done():
            failed = kind.endswith('.failed')
            self.answer.set_result((message.get('message') or 'failed') if failed else None)

    async def _ask(self, kind):
        self.answer = self.loop.create_future()
        await self.inbox.put({'type': kind})
        return await self.answer

    async def startup(self):
        """-> None when the app completed startup, else the reason it did not."""
        self.task = self.loop.create_task(self._main())
        return await self._ask('lifespan.startup')

    async def shutdown(self):
        if self.task.done():
            return
        failure = await self._ask('lifespan.shutdown')
        if failure is not None:
            sys.stderr.write('lifespan shutdown failed: %s\n' % failure)


def start_lifespan(worker, mode):
    """Runs lifespan startup; returns None, or the boot error text."""
    lifespan = Lifespan(worker.app, worker.state, worker.loop)
    failure = worker.loop.run_until_complete(lifespan.startup())
    if failure is None:
        worker.lifespan = lifespan
        return None
    if lifespan.error is not None and not lifespan.answered and mode == 'auto':
        # The app raised instead of answering: like Uvicorn, take it as an app without
        # lifespan support and go on.
        last = lifespan.error.strip().splitlines()[-1]
        sys.stderr.write('ASGI lifespan unsupported by the app (lifespan auto), going on: %s\n' % last)
        worker.state.clear()
        return None
    if lifespan.error is None and failure == 'the app returned without answering' and mode == 'auto':
        sys.stderr.write('ASGI lifespan unsupported by the app (lifespan auto), going on: '
                         'it returned without answering lifespan.startup\n')
        worker.state.clear()
        return None
    return 'ASGI lifespan startup failed: %s' % failure
