"""FastAPI on caddy-wsgi's asgi directive: a JSON API, a WebSocket chat room and lifespan.

    caddy asgi-server --venv .venv --chdir examples/fastapi main:app
    # or: ./caddy run --config examples/fastapi/Caddyfile

Open http://localhost:8000/ in two browser tabs and chat. Each worker process has its own
room (rooms live in memory): run one worker (-w 1), or use Redis pub/sub for more.
"""
import contextlib
import os
import time

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from pydantic import BaseModel


@contextlib.asynccontextmanager
async def lifespan(app):
    # Runs once per worker before it takes requests (open pools, load models here).
    yield {"booted": time.time(), "worker": os.getpid()}


app = FastAPI(title="caddy-wsgi FastAPI example", lifespan=lifespan)
members = set()


class Item(BaseModel):
    id: int
    name: str
    worker: int


@app.get("/api/items/{item_id}", response_model=Item)
async def get_item(item_id: int, name: str = "widget"):
    return Item(id=item_id, name=name, worker=os.getpid())


@app.websocket("/ws/chat")
async def chat(ws: WebSocket):
    await ws.accept()
    members.add(ws)
    try:
        while True:
            text = await ws.receive_text()
            for other in list(members):
                try:
                    await other.send_text(text)
                except Exception:  # a member that left: drop it
                    members.discard(other)
    except WebSocketDisconnect:
        members.discard(ws)


PAGE = """<!doctype html>
<meta charset="utf-8"><title>caddy-wsgi chat</title>
<h1>Chat over a WebSocket, served by Caddy + FastAPI</h1>
<form id="f"><input id="m" autocomplete="off" autofocus> <button>Send</button></form>
<ul id="log"></ul>
<script>
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/chat");
ws.onmessage = e => { const li = document.createElement("li"); li.textContent = e.data; log.prepend(li); };
f.onsubmit = e => { e.preventDefault(); ws.send(m.value); m.value = ""; };
</script>
"""


@app.get("/", response_class=HTMLResponse)
async def index():
    return PAGE
