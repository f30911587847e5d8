"""FastAPI background tasks under the asgi directive (integration/asgi_frameworks_test.go).

POST /jobs/{token}?dir=D answers at once and schedules two tasks: an async one that waits
until the test creates D/{token}.go (a file, so the test needs no request to release it),
then writes D/{token}.async; and a sync one (FastAPI runs it in its thread pool) that writes
D/{token}.sync. GET /jobs/{token} shows the events in the order they happened.
Module state is per worker: the test runs it with `workers 1`.
"""
import asyncio
import os
import threading
import time

from fastapi import BackgroundTasks, FastAPI

app = FastAPI()
_log = {}  # token -> events in the order they happened


async def async_task(token, directory):
    _log[token].append('async task started')
    deadline = time.monotonic() + 60
    go = os.path.join(directory, token + '.go')
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            _log[token].append('async task gave up waiting for ' + go)
            return
        await asyncio.sleep(0.01)
    with open(os.path.join(directory, token + '.async'), 'w') as f:
        f.write('async ' + token)
    _log[token].append('async task done')


def sync_task(token, directory, loop_thread):
    with open(os.path.join(directory, token + '.sync'), 'w') as f:
        f.write('sync ' + token)
    where = 'loop thread' if threading.get_ident() == loop_thread else 'another thread'
    _log[token].append('sync task done in ' + where)


@app.post('/jobs/{token}')
async def schedule(token: str, dir: str, background: BackgroundTasks):
    _log[token] = ['handler']
    background.add_task(async_task, token, dir)
    background.add_task(sync_task, token, dir, threading.get_ident())
    return {'scheduled': token}


@app.get('/jobs/{token}')
async def status(token: str):
    return {'log': _log.get(token)}
