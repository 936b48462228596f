"""Worker heartbeats: each running job engine's row, written every HEARTBEAT_SECONDS.

``/ready`` answers whether an engine was seen within GATEWAY_READY_WORKER_SECONDS. The rows live
in the database, the one store every configuration has (Postgres or SQLite), so the check reads
the same on the embedded default as in production. An engine deletes its row when it stops; the
row of one that died is left behind, goes stale, and is purged by beat after STALE_AFTER.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from jobs.models import WorkerHeartbeat

HEARTBEAT_SECONDS = 5.0
STALE_AFTER = timedelta(hours=1)


def beat(worker_id: str) -> None:
    """This engine is running now."""
    now = timezone.now()
    if not WorkerHeartbeat.objects.filter(pk=worker_id).update(seen_at=now):
        WorkerHeartbeat.objects.update_or_create(pk=worker_id, defaults={"seen_at": now})


def stop(worker_id: str) -> None:
    """This engine has stopped."""
    WorkerHeartbeat.objects.filter(pk=worker_id).delete()


def last_seen() -> datetime | None:
    """When a running engine was last seen; None when none has been."""
    latest = WorkerHeartbeat.objects.order_by("-seen_at").values_list("seen_at", flat=True)
    return latest.first()


def purge_stale() -> int:
    """Forget engines not seen for STALE_AFTER (they died without saying so)."""
    deleted, _ = WorkerHeartbeat.objects.filter(seen_at__lt=timezone.now() - STALE_AFTER).delete()
    return deleted
