"""Stdlib-only ASGI app: reports the event loop class the worker runs (uvloop or asyncio)."""
import asyncio


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # lifespan: unsupported, the worker goes on (lifespan auto)
    loop = type(asyncio.get_running_loop())
    body = ("%s.%s" % (loop.__module__, loop.__name__)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
