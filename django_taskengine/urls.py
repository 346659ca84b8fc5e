"""URLs of the task engine's optional views.

``path("taskengine/", include("django_taskengine.urls"))`` in your URLconf.

- ``metrics`` — the Prometheus metrics (:func:`django_taskengine.metrics.metrics_view`; needs
  ``django-taskengine[prometheus]``).
"""

from __future__ import annotations

from django.urls import path

from .metrics import metrics_view

app_name = "taskengine"
urlpatterns = [path("metrics", metrics_view, name="metrics")]
