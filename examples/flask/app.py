"""Flask example for caddy-wsgi: an app factory with one blueprint.

Served by Caddy as ``wsgi app:create_app()`` (see the Caddyfile beside this file).
Run from the repository root after creating the venv (see README / requirements-test.txt):

    ./caddy run --config examples/flask/Caddyfile

The same factory works under any WSGI server, e.g.
``.venv/bin/gunicorn --chdir examples/flask 'app:create_app()'``.
"""

import os

from flask import Flask

# Every worker process must sign the session cookie with the same key, or a cookie set by one
# worker is rejected by the next. Set FLASK_SECRET_KEY in production.
DEV_SECRET_KEY = "caddy-wsgi-flask-example-not-a-secret"


def create_app(test_config=None):
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("FLASK_SECRET_KEY", DEV_SECRET_KEY),
        # Multipart uploads larger than this get 413 from Flask itself.
        MAX_CONTENT_LENGTH=int(os.environ.get("FLASK_MAX_UPLOAD", 16 * 1024 * 1024)),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    if test_config:
        app.config.update(test_config)

    from views import bp

    app.register_blueprint(bp)
    app.logger.info("flask example app created in pid %d", os.getpid())
    return app
