"""Reads of jobs, scoped to the caller."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from django.db import connections, router
from django.db.models import Field
from django.utils import timezone

from gateway.errors import NotFound
from gateway.principals import Principal
from jobs.models import AsyncJob

# What a poll answers with, and what decides whether the caller may see the job. The request
# itself (prompts of up to GATEWAY_MAX_BODY_BYTES) is never read back for a poll.
POLL_FIELDS = (
    "id",
    "request_type",
    "virtual_key_id",
    "status",
    "created_at",
    "expires_at",
    "completed_at",
    "status_code",
    "result",
    "error",
)


_POLL_ATTNAMES = frozenset(POLL_FIELDS)


@functools.cache
def _poll_fields() -> list[Field[Any, Any]]:
    """POLL_FIELDS in the model's order, the order ``Model.from_db`` takes values in."""
    return [f for f in AsyncJob._meta.concrete_fields if f.attname in _POLL_ATTNAMES]


@functools.cache
def _poll_sql(vendor: str) -> str:
    quote = connections[router.db_for_read(AsyncJob)].ops.quote_name
    columns = ", ".join(quote(field.column) for field in _poll_fields())
    pk = quote(AsyncJob._meta.get_field("id").column)
    return f"SELECT {columns} FROM {quote(AsyncJob._meta.db_table)} WHERE {pk} = %s"  # noqa: S608 (names from the model)


def _read_job(pk: uuid.UUID) -> AsyncJob | None:
    """The job's POLL_FIELDS, read with one written-out statement; the rest stay deferred.

    Building an ORM query costs more than running it, and polls are the most frequent
    request. Values pass through the same converters the ORM applies (JSON, and dates and
    UUIDs on SQLite), so the instance is what ``AsyncJob.objects.only(*POLL_FIELDS)`` gives.
    """
    conn = connections[router.db_for_read(AsyncJob)]
    pk_value = AsyncJob._meta.get_field("id").get_db_prep_value(pk, conn)
    with conn.cursor() as cursor:
        cursor.execute(_poll_sql(conn.vendor), [pk_value])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for field, value in zip(_poll_fields(), row, strict=True):
        col = field.cached_col
        converted = value
        for convert in conn.ops.get_db_converters(col) + col.get_db_converters(conn):
            converted = convert(converted, col, conn)
        values.append(converted)
    return AsyncJob.from_db(conn.alias, _POLL_ATTNAMES, values)


def get_visible_job(job_id: str, principal: Principal, request_type: str) -> AsyncJob:
    """The job, if this caller may see it; 404 alike for unknown, expired, foreign, other type.

    The job is read by primary key alone; its type and owner are compared here.
    """
    try:
        pk = uuid.UUID(job_id)
    except ValueError:
        raise _not_found(job_id, request_type) from None
    job = _read_job(pk)
    owner = principal.virtual_key.pk if principal.virtual_key is not None else None
    if (
        job is None
        or job.request_type != request_type
        or (not principal.is_admin and job.virtual_key_id != owner)
        or (job.expires_at is not None and job.expires_at <= timezone.now())
    ):
        raise _not_found(job_id, request_type)
    return job


def _not_found(job_id: str, request_type: str) -> NotFound:
    return NotFound(
        f"No {request_type} job with id {job_id!r}.",
        code="job_not_found",
        request_type=request_type,
    )
