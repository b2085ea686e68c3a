"""The Celery app: Redis broker, one queue per model (see inference_worker)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")

app = Celery("chatweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
