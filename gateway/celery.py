"""The Celery app: ``celery -A gateway worker`` and ``celery -A gateway beat``."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from gateway.startup import load_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

app = Celery("gateway")


@app.on_configure.connect
def _load_settings_first(sender: Any = None, **kwargs: Any) -> None:
    """Sent when Celery first reads its configuration, before it reads a single setting."""
    load_settings()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["jobs", "gateway.access"])

app.conf.beat_schedule = {
    "purge-expired-jobs": {"task": "jobs.purge_expired_jobs", "schedule": 60.0},
    "redispatch-stale-jobs": {"task": "jobs.redispatch_stale_jobs", "schedule": 15.0},
    "purge-expired-revocations": {
        "task": "gateway.purge_expired_revocations",
        "schedule": 3600.0,
    },
}
