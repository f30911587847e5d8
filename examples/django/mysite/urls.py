from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("info/", views.info, name="info"),
    path("upload/", views.upload, name="upload"),
    path("admin/", admin.site.urls),
]
