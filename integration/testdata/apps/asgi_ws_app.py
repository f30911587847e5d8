"""FastAPI app for the WebSocket, lifespan, disconnect and trailer tests of the asgi
directive. MARKER_DIR (env) receives files the tests read: lifespan events, close codes,
disconnects."""
import asyncio
import contextlib
import json
import os

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse

MARKERS = os.environ.get("MARKER_DIR", "/tmp")
os.makedirs(MARKERS, exist_ok=True)


def mark(name, text):
    with open(os.path.join(MARKERS, name), "a") as f:
        f.write(text + "\n")


@contextlib.asynccontextmanager
async def lifespan(app):
    mark("lifespan", "startup %d" % os.getpid())
    if os.environ.get("FAIL_STARTUP"):
        raise RuntimeError("database unreachable: " + os.environ["FAIL_STARTUP"])
    yield {"started_by": os.getpid(), "greeting": "hello from lifespan"}
    mark("lifespan", "shutdown %d" % os.getpid())


app = FastAPI(lifespan=lifespan)
rooms = {}


@app.get("/state")
async def state(request: Request):
    return {"started_by": request.state.started_by, "greeting": request.state.greeting,
            "pid": os.getpid()}


@app.websocket("/ws/echo")
async def echo(ws: WebSocket):
    await ws.accept(subprotocol=(ws.scope["subprotocols"] or [None])[0])
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                mark("closes", "%s %s" % (msg.get("code"), msg.get("reason", "")))
                return
            if msg.get("text") is not None:
                text = msg["text"]
                if text.startswith("close:"):
                    _, code, reason = text.split(":", 2)
                    await ws.close(int(code), reason)
                    return
                if text == "scope":
                    scope = {k: v for k, v in ws.scope.items()
                             if k in ("type", "scheme", "path", "root_path", "http_version", "subprotocols")}
                    scope["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in ws.scope["headers"]]
                    await ws.send_text(json.dumps(scope))
                elif text == "boom":
                    raise RuntimeError("boom in a websocket")
                else:
                    await ws.send_text(text)
            else:
                await ws.send_bytes(msg["bytes"])
    except WebSocketDisconnect as e:
        mark("closes", "%s" % e.code)


@app.websocket("/ws/chat/{room}")
async def chat(ws: WebSocket, room: str):
    await ws.accept()
    members = rooms.setdefault(room, set())
    members.add(ws)
    try:
        while True:
            text = await ws.receive_text()
            for other in list(members):
                try:
                    await other.send_text(text)
                except Exception:
                    members.discard(other)
    except WebSocketDisconnect:
        members.discard(ws)


@app.websocket("/ws/deny")
async def deny(ws: WebSocket):
    await ws.close(code=1008)


@app.get("/wait-disconnect")
async def wait_disconnect(request: Request):
    # Long polling: nothing is sent until the client goes away.
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            mark("disconnects", "http.disconnect")
            return {}


@app.get("/file")
async def file(size: int = 5 << 20):
    # FileResponse uses http.response.pathsend when the server offers it: Caddy sends the
    # file itself from the descriptor the worker passes.
    path = os.path.join(MARKERS, "download-%d.bin" % size)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(bytes(range(256)) * (size // 256))
    return FileResponse(path, media_type="application/octet-stream")


@app.get("/block")
async def block(s: float = 30):
    import time
    time.sleep(s)  # blocks the event loop: every request of this worker waits
    return {"blocked": s}


@app.get("/slow")
async def slow():
    await asyncio.sleep(30)
    return {"late": True}


async def raw(scope, receive, send):
    """Raw ASGI at /raw: a denial response and trailers."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "websocket.http.response.body", "body": b"token needed"})
        return
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum")]})
    await send({"type": "http.response.body", "body": b"part one, ", "more_body": True})
    await send({"type": "http.response.body", "body": b"part two", "more_body": False})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")]})


app.mount("/raw", raw)
