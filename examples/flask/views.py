"""The routes of the Flask example, as a blueprint."""

import hashlib
import json
import os
import time

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)

bp = Blueprint("main", __name__)


@bp.get("/")
def index():
    return render_template("index.html", visits=session.get("visits", 0))


# --- a form (application/x-www-form-urlencoded POST) -------------------------------------

@bp.route("/form", methods=["GET", "POST"])
def form():
    if request.method == "GET":
        return render_template("form.html", errors=None, values={})
    name = request.form.get("name", "").strip()
    message = request.form.get("message", "")
    colours = request.form.getlist("colour")
    if not name:
        return render_template("form.html", errors="name is required", values=request.form), 400
    if request.accept_mimetypes.best == "application/json":
        return jsonify(name=name, message=message, colours=colours)
    return render_template("thanks.html", name=name, message=message, colours=colours)


# --- a file upload (multipart/form-data) ---------------------------------------------------

@bp.route("/upload", methods=["GET", "POST"])
def upload():
    if request.method == "GET":
        return render_template("upload.html")
    files = []
    for field, storage in request.files.items(multi=True):
        digest = hashlib.sha256()
        size = 0
        while True:
            chunk = storage.stream.read(64 * 1024)
            if not chunk:
                break
            size += len(chunk)
            digest.update(chunk)
        files.append(
            {
                "field": field,
                "filename": storage.filename,
                "content_type": storage.content_type,
                "size": size,
                "sha256": digest.hexdigest(),
            }
        )
    if not files:
        abort(400, "no file in the request")
    return jsonify(files=files, fields=request.form.to_dict(flat=False))


# --- cookies and the session ------------------------------------------------------------

@bp.get("/session")
def session_counter():
    """Counts this client's visits in the (signed cookie) session."""
    session["visits"] = session.get("visits", 0) + 1
    return jsonify(visits=session["visits"], pid=os.getpid())


@bp.post("/session/reset")
def session_reset():
    session.clear()
    return redirect(url_for("main.index"))


@bp.get("/cookie/set")
def cookie_set():
    """Sets a plain cookie from the query string: /cookie/set?name=flavour&value=oatmeal."""
    name = request.args.get("name", "flavour")
    value = request.args.get("value", "")
    resp = make_response(jsonify(set={name: value}))
    resp.set_cookie(name, value, httponly=True, samesite="Lax")
    return resp


@bp.get("/cookie")
def cookie_get():
    return jsonify(cookies=request.cookies.to_dict())


# --- streaming ---------------------------------------------------------------------------

@bp.get("/stream")
def stream_text():
    """A plain streamed text response, one line every `interval` seconds."""
    count = min(request.args.get("count", 5, type=int), 1000)
    interval = min(request.args.get("interval", 0.5, type=float), 10.0)

    def lines():
        for i in range(count):
            if i:
                time.sleep(interval)
            yield f"line {i}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@bp.get("/events")
def events():
    """Server-sent events. Each event carries the time (time.time()) at which the app
    produced it, so a client can tell that it received event n before event n+1 existed."""
    count = min(request.args.get("count", 5, type=int), 1000)
    interval = min(request.args.get("interval", 1.0, type=float), 10.0)
    current_app.logger.info("sse stream of %d events", count)

    def generate():
        yield "retry: 2000\n\n"
        for i in range(count):
            if i:
                time.sleep(interval)
            payload = json.dumps({"n": i, "produced_at": time.time(), "pid": os.getpid()})
            yield f"id: {i}\nevent: tick\ndata: {payload}\n\n"
        yield "event: done\ndata: {}\n\n"

    return Response(
        stream_with_context(generate()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


@bp.get("/events/page")
def events_page():
    return render_template("events.html")
