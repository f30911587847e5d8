"""Settings of the ASGI Django test project: no database, CSRF protection on."""
SECRET_KEY = 'asgi-django-test-secret-key-for-caddy-wsgi-integration-0123456789'
DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
ROOT_URLCONF = 'asgi_djangosite.urls'
INSTALLED_APPS = []
MIDDLEWARE = [
    'django.middleware.common.CommonMiddleware',
    'django.middleware.csrf.CsrfViewMiddleware',
]
DATABASES = {}
TEMPLATES = []
USE_TZ = True
