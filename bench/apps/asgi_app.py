"""Raw ASGI 3 app of the caddy-wsgi benchmark suite (stdlib only, no framework).

Routes (one module so that every server is started once for both):
  /hello   HTTP: 13-byte "Hello, world!"
  /ws      WebSocket: accepts, then echoes every message (text as text, bytes as bytes)
Lifespan events are acknowledged, for the servers that send them.
"""

HELLO = b"Hello, world!"
HELLO_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
NOT_FOUND_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"9")]


async def http(scope, receive, send):
    if scope["path"] == "/hello":
        await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO})
        return
    await send({"type": "http.response.start", "status": 404, "headers": NOT_FOUND_HEADERS})
    await send({"type": "http.response.body", "body": b"not found"})


async def websocket(scope, receive, send):
    msg = await receive()
    if msg["type"] != "websocket.connect":
        return
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.receive":
            if msg.get("text") is not None:
                await send({"type": "websocket.send", "text": msg["text"]})
            else:
                await send({"type": "websocket.send", "bytes": msg.get("bytes") or b""})
        elif msg["type"] == "websocket.disconnect":
            return


async def lifespan(scope, receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        await websocket(scope, receive, send)
    elif kind == "lifespan":
        await lifespan(scope, receive, send)


application = app
