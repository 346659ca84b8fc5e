"""URLs of the example project: the Django admin, where jobs and queues can be inspected."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
