"""Flask app of the benchmark suite: GET /flask/json, a JSON view reading a query argument."""
from flask import Flask, jsonify, request

app = Flask(__name__)
ITEMS = [{"id": i, "name": "item-%02d" % i, "price": round(i * 1.25, 2)} for i in range(10)]


@app.get("/flask/json")
def items():
    limit = request.args.get("limit", default=10, type=int)
    return jsonify(items=ITEMS[:limit], count=min(limit, len(ITEMS)), server="flask")


application = app
