"""The ASGI entry point: `asgi asgi_djangosite.asgi:application`."""
import os

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'asgi_djangosite.settings')

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
