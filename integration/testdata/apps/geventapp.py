"""An app for worker_class gevent: requests that wait on I/O overlap in one process."""
import json
import os
import socket
import time

_state = {"now": 0, "max": 0}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/wait":
        _state["now"] += 1
        _state["max"] = max(_state["max"], _state["now"])
        try:
            time.sleep(float(environ.get("QUERY_STRING") or "0.3"))  # patched: yields
        finally:
            _state["now"] -= 1
        body = b"waited"
    else:
        body = json.dumps({
            "pid": os.getpid(),
            "max_concurrent": _state["max"],
            "socket_class": socket.socket.__module__,
            "multithread": environ["wsgi.multithread"],
        }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
