"""A Starlette app for the asgi directive (integration/asgi_frameworks_test.go).

Module state is per worker: the test runs it with `workers 1`, so that a request can release
or observe another one (the gates, the upload progress).
"""
import asyncio
import hashlib

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

_received = {}  # upload id -> bytes the app has read so far
_gates = {}     # stream id -> asyncio.Event set by POST /release


def _gate(key):
    gate = _gates.get(key)
    if gate is None:
        gate = _gates[key] = asyncio.Event()
    return gate


async def upload(request):
    """Reads the body with request.stream(), counting what arrived so far for /progress."""
    key = request.query_params['id']
    digest = hashlib.sha256()
    total = chunks = 0
    _received[key] = 0
    async for chunk in request.stream():
        if chunk:
            chunks += 1
            total += len(chunk)
            digest.update(chunk)
            _received[key] = total
    return JSONResponse({'total': total, 'chunks': chunks, 'sha256': digest.hexdigest()})


async def progress(request):
    return JSONResponse({'received': _received.get(request.query_params['id'], -1)})


async def stream(request):
    """Sends "first", then waits until the test has released it before sending "second"."""
    gate = _gate(request.query_params['id'])

    async def chunks():
        yield b'first\n'
        await gate.wait()
        yield b'second\n'
        yield b'third\n'

    return StreamingResponse(chunks(), media_type='text/plain')


async def release(request):
    _gate(request.query_params['id']).set()
    return PlainTextResponse('released')


async def echo_json(request):
    data = await request.json()
    return JSONResponse({'got': data, 'keys': sorted(data), 'answer': 'caf\u00e9 \u2615',
                         'content_type': request.headers.get('content-type')})


async def where(request):
    return JSONResponse({
        'url': str(request.url),
        'base_url': str(request.base_url),
        'root_path': request.scope.get('root_path', ''),
        'path': request.scope['path'],
        'url_for_item': str(request.url_for('item', item_id=7)),
        'url_for_leaf': str(request.url_for('sub:leaf', name='x')),
    })


async def item(request):
    return JSONResponse({'item_id': request.path_params['item_id'], 'url': str(request.url)})


async def leaf(request):
    return JSONResponse({'leaf': request.path_params['name'], 'url': str(request.url),
                         'root_path': request.scope.get('root_path', '')})


async def inner(request):
    """Its path starts with the segment the test mounts the app at (/st/st/inner)."""
    return JSONResponse({'inner': True, 'url': str(request.url)})


app = Starlette(routes=[
    Route('/upload', upload, methods=['POST']),
    Route('/progress', progress),
    Route('/stream', stream),
    Route('/release', release, methods=['POST']),
    Route('/json', echo_json, methods=['POST']),
    Route('/where', where),
    Route('/items/{item_id:int}', item, name='item'),
    Route('/st/inner', inner),
    Mount('/sub', routes=[Route('/leaf/{name}', leaf, name='leaf')], name='sub'),
])
