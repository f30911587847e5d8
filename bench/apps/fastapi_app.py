"""FastAPI app of the benchmark suite: GET /fastapi/json, a JSON view reading a typed query
argument and answering with a pydantic response model (the ASGI counterpart of flask_app.py)."""
from fastapi import FastAPI
from pydantic import BaseModel


class Item(BaseModel):
    id: int
    name: str
    price: float


class Items(BaseModel):
    items: list[Item]
    count: int
    server: str


app = FastAPI()
ITEMS = [Item(id=i, name="item-%02d" % i, price=round(i * 1.25, 2)) for i in range(10)]


@app.get("/fastapi/json", response_model=Items)
async def items(limit: int = 10):
    return Items(items=ITEMS[:limit], count=min(limit, len(ITEMS)), server="fastapi")


application = app
