"""A FastAPI app for the asgi directive."""
import asyncio
import os

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

app = FastAPI()
_state = {"now": 0, "max": 0}


@app.get("/items/{item_id}")
async def item(item_id: int, q: str = ""):
    return {"item_id": item_id, "q": q, "pid": os.getpid()}


@app.post("/echo")
async def echo(request: Request):
    body = await request.body()
    return {"length": len(body), "head": body[:16].decode("latin-1")}


@app.get("/stream")
async def stream():
    async def gen():
        for i in range(5):
            yield b"chunk%d\n" % i
            await asyncio.sleep(0.01)
    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/wait")
async def wait():
    _state["now"] += 1
    _state["max"] = max(_state["max"], _state["now"])
    try:
        await asyncio.sleep(0.5)
    finally:
        _state["now"] -= 1
    return {"ok": True}


@app.get("/info")
async def info(request: Request):
    return {"max_concurrent": _state["max"], "root_path": request.scope.get("root_path"),
            "client": list(request.scope["client"] or []), "scheme": request.url.scheme}
