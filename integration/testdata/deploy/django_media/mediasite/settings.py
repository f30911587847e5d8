"""The Django example's settings plus user-uploaded media, as docs/recipes.md shows them.

MEDIA_ROOT is where FileSystemStorage writes uploads; Caddy serves it at MEDIA_URL with
file_server. Note what is *not* here: SECURE_PROXY_SSL_HEADER. Caddy terminates TLS and
tells the worker wsgi.url_scheme=https itself, so request.is_secure() is already right.
"""

import os

from mysite.settings import *  # noqa: F401,F403

ROOT_URLCONF = "mediasite.urls"
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ["DJANGO_MEDIA_ROOT"]
