"""The admin at /admin/, for the admin page timings (benchmarks/admin_pages.py)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
