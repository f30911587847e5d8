"""WSGI entry point of the benchmark suite's Django project (bench/apps/djbench)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djbench.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
