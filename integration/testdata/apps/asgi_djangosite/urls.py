"""URLs of the ASGI Django test project. The test mounts it at / and under handle_path /dj/*;
'dj/inner' starts with that prefix on purpose (/dj/dj/inner must reach it)."""
from django.urls import path

from . import views

urlpatterns = [
    path('async', views.async_view, name='async'),
    path('sync', views.sync_view, name='sync'),
    path('wait', views.wait_view, name='wait'),
    path('exempt', views.exempt_post, name='exempt'),
    path('protected', views.protected_post, name='protected'),
    path('dj/inner', views.inner_view, name='inner'),
    path('slashed/', views.inner_view, name='slashed'),
]
