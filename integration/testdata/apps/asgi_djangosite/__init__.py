"""A minimal Django project served by Django's ASGI handler (integration/asgi_frameworks_test.go).

No database, no installed apps: settings, URLs and views only.
"""
