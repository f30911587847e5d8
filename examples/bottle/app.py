"""Bottle example for caddy-wsgi: a small JSON API backed by SQLite.

Served by Caddy as ``wsgi app:app`` (a Bottle application object is a WSGI callable); see the
Caddyfile beside this file. Run from the repository root, with bottle installed in .venv:

    ./caddy run --config examples/bottle/Caddyfile
    curl -s localhost:8080/api/notes -d '{"text": "hello"}' -H 'Content-Type: application/json'
    curl -s localhost:8080/api/notes

The notes live in SQLite (BOTTLE_NOTES_DB, default in the temp dir), not in a Python list:
every worker process has its own memory, so state shared by requests must live outside it.
"""

import json
import os
import sqlite3
import tempfile

import bottle
from bottle import Bottle, HTTPResponse, request, response

DB_PATH = os.environ.get(
    "BOTTLE_NOTES_DB", os.path.join(tempfile.gettempdir(), "caddy-wsgi-bottle-notes.sqlite3")
)
MAX_TEXT = 10_000

app = Bottle()


def db():
    # One connection per request: cheap for SQLite, and safe with threads and forks.
    conn = sqlite3.connect(DB_PATH, timeout=20)
    conn.row_factory = sqlite3.Row
    conn.execute(
        "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL)"
    )
    return conn


def error(status, message):
    return HTTPResponse(
        status=status,
        body=json.dumps({"error": message}),
        headers={"Content-Type": "application/json"},
    )


@app.get("/api/")
def index():
    return {
        "api": "notes",
        "endpoints": ["GET /api/notes", "POST /api/notes", "GET /api/notes/<id>", "DELETE /api/notes/<id>"],
        # what the server told the app
        "script_name": request.environ.get("SCRIPT_NAME", ""),
        "url_scheme": request.environ.get("wsgi.url_scheme"),
        "pid": os.getpid(),
    }


@app.get("/api/notes")
def list_notes():
    with db() as conn:
        rows = conn.execute("SELECT id, text FROM notes ORDER BY id").fetchall()
    return {"notes": [dict(r) for r in rows]}


@app.post("/api/notes")
def create_note():
    try:
        data = request.json
    except Exception:  # bottle raises on malformed JSON
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not data["text"].strip():
        return error(400, 'want a JSON object {"text": "..."}')
    if len(data["text"]) > MAX_TEXT:
        return error(413, "text longer than %d characters" % MAX_TEXT)
    with db() as conn:
        cur = conn.execute("INSERT INTO notes (text) VALUES (?)", (data["text"],))
        note_id = cur.lastrowid
    response.status = 201
    response.set_header("Location", app.get_url("note", id=note_id))
    return {"id": note_id, "text": data["text"]}


@app.get("/api/notes/<id:int>", name="note")
def get_note(id):
    with db() as conn:
        row = conn.execute("SELECT id, text FROM notes WHERE id = ?", (id,)).fetchone()
    if row is None:
        return error(404, "no note %d" % id)
    return dict(row)


@app.delete("/api/notes/<id:int>")
def delete_note(id):
    with db() as conn:
        gone = conn.execute("DELETE FROM notes WHERE id = ?", (id,)).rowcount
    if not gone:
        return error(404, "no note %d" % id)
    response.status = 204
    return ""


@app.error(404)
@app.error(405)
def json_error(err):
    response.content_type = "application/json"
    return json.dumps({"error": err.status_line})


# get_url() builds URLs under SCRIPT_NAME, so the API works mounted below a prefix too.
bottle.debug(os.environ.get("BOTTLE_DEBUG") == "1")
