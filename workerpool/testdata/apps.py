"""Apps for the workerpool tests (stdlib only)."""
import os


def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [str(os.getpid()).encode()]


def die(environ, start_response):
    os._exit(7)
