"""Settings of the Django example for caddy-wsgi.

Everything that differs between a laptop, CI and production comes from environment variables
(set them in the shell that runs Caddy and manage.py, or with `env` lines in the wsgi block):

  DJANGO_SECRET_KEY     secret key (a fixed development key by default: change it!)
  DJANGO_DEBUG          "1" to turn DEBUG on (off by default)
  DJANGO_ALLOWED_HOSTS  comma-separated host names (default "localhost,127.0.0.1")
  DJANGO_DB_PATH        the SQLite database file, in a writable place
                        (default: <temp dir>/caddy-wsgi-django-example.sqlite3)
  DJANGO_STATIC_ROOT    where `manage.py collectstatic` puts static files, served by Caddy's
                        file_server under /static/ (default: <this project>/staticfiles)

The app is mounted under a sub-path by Caddy (handle_path /app/*). Caddy passes the stripped
prefix as SCRIPT_NAME, and Django prefixes every reverse()d URL with it, so neither
FORCE_SCRIPT_NAME nor a prefix in urls.py is needed. STATIC_URL is absolute ("/static/"),
so static URLs are *not* prefixed: Caddy serves them at the site root.
"""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-caddy-wsgi-example-change-me"
)
DEBUG = os.environ.get("DJANGO_DEBUG", "") in ("1", "true", "True", "yes")
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
    if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "mysite",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mysite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "mysite.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "DJANGO_DB_PATH",
            os.path.join(tempfile.gettempdir(), "caddy-wsgi-django-example.sqlite3"),
        ),
        # Several worker processes share the file: wait for a lock instead of failing.
        "OPTIONS": {"timeout": 20},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Request bodies that Django reads into memory (request.body, urlencoded forms).
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # stderr becomes Caddy's log
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
