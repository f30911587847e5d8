"""Creates (or recreates) the SQLite database of the Django benchmark view: 50 items."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djbench.settings")

import django  # noqa: E402

django.setup()
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

db = settings.DATABASES["default"]["NAME"]
os.makedirs(os.path.dirname(db), exist_ok=True)
if os.path.exists(db):
    os.remove(db)
call_command("migrate", run_syncdb=True, verbosity=0)
from djbench.models import Item  # noqa: E402

Item.objects.bulk_create(Item(name="item-%02d" % i, price=i * 1.5, stock=i % 7) for i in range(50))
print("created", db, Item.objects.count(), "items")
