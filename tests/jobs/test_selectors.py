"""The poll's read (jobs/selectors.py): the columns it reads and the values it gives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from jobs import selectors
from jobs.models import AsyncJob, JobStatus
from jobs.selectors import POLL_FIELDS, PolledJob
from tests.factories import AsyncJobFactory

pytestmark = pytest.mark.django_db


def test_polled_fields_are_model_columns_in_the_models_order():
    columns = [field.attname for field in AsyncJob._meta.concrete_fields]
    assert all(name in columns for name in POLL_FIELDS)
    assert sorted(POLL_FIELDS, key=columns.index) == list(POLL_FIELDS)
    assert "request" not in POLL_FIELDS  # prompts are never read back for a poll


def test_a_read_gives_what_the_models_attributes_hold():
    now = timezone.now()
    job: Any = AsyncJobFactory(
        status=JobStatus.COMPLETED,
        status_code=200,
        completed_at=now,
        expires_at=now + timedelta(hours=1),
        result={"choices": [{"text": "é\u2028"}], "usage": {"total_tokens": 3}},
        error=None,
    )
    polled = selectors._read_job(job.pk)
    stored = AsyncJob.objects.get(pk=job.pk)
    assert isinstance(polled, PolledJob)
    for name in POLL_FIELDS:
        assert getattr(polled, name) == getattr(stored, name), name
        assert type(getattr(polled, name)) is type(getattr(stored, name)), name


def test_an_unknown_id_reads_nothing():
    assert selectors._read_job(AsyncJobFactory.build().pk) is None


def test_converters_are_asked_once_per_connection(monkeypatch: pytest.MonkeyPatch):
    job: Any = AsyncJobFactory(result={"a": 1})
    selectors._read_job(job.pk)
    asked: list[Any] = []
    real = connection.ops.get_db_converters
    monkeypatch.setattr(connection.ops, "get_db_converters", lambda e: asked.append(e) or real(e))
    assert selectors._read_job(job.pk).result == {"a": 1}
    assert asked == []
