"""Reads of jobs, scoped to the caller."""

from __future__ import annotations

import functools
import uuid
import weakref
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field
from django.utils import timezone

from gateway.errors import NotFound
from gateway.principals import Principal
from jobs.models import AsyncJob


class PolledJob(NamedTuple):
    """What a poll answers with, and what decides whether the caller may see the job.

    The request itself (prompts of up to GATEWAY_MAX_BODY_BYTES) is never read back for a
    poll. The fields are AsyncJob's columns of the same names, in the model's order.
    """

    id: uuid.UUID
    request_type: str
    virtual_key_id: int | None
    status: str
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    status_code: int | None
    result: Any
    error: Any


POLL_FIELDS = PolledJob._fields


@functools.cache
def _poll_fields() -> list[Field[Any, Any]]:
    """The model's fields behind POLL_FIELDS, in order."""
    columns = {field.attname: field for field in AsyncJob._meta.concrete_fields}
    return [columns[name] for name in POLL_FIELDS]


@functools.cache
def _poll_sql(vendor: str) -> str:
    quote = connections[router.db_for_read(AsyncJob)].ops.quote_name
    columns = ", ".join(quote(field.column) for field in _poll_fields())
    pk = quote(AsyncJob._meta.get_field("id").column)
    return f"SELECT {columns} FROM {quote(AsyncJob._meta.db_table)} WHERE {pk} = %s"  # noqa: S608 (names from the model)


def _read_job(pk: uuid.UUID) -> PolledJob | None:
    """The job's POLL_FIELDS, read with one written-out statement.

    Building an ORM query and a model instance costs more than running the query, and polls
    are the most frequent request. Values pass through the converters the ORM applies (JSON,
    and dates and UUIDs on SQLite), so each field holds what the model's attribute would.
    """
    conn = connections[router.db_for_read(AsyncJob)]
    pk_value = AsyncJob._meta.get_field("id").get_db_prep_value(pk, conn)
    with conn.cursor() as cursor:
        cursor.execute(_poll_sql(conn.vendor), [pk_value])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, col, converters in _poll_converters(conn):
        for convert in converters:
            values[index] = convert(values[index], col, conn)
    return PolledJob(*values)


_converters: weakref.WeakKeyDictionary[BaseDatabaseWrapper, list[tuple[int, Any, list[Any]]]] = (
    weakref.WeakKeyDictionary()
)


def _poll_converters(conn: BaseDatabaseWrapper) -> list[tuple[int, Any, list[Any]]]:
    """(index, column, converters) of the POLL_FIELDS that have converters on ``conn``.

    The ORM's compiler asks every column for its converters on every query; a connection's
    answers do not change, so they are asked once per connection.
    """
    found = _converters.get(conn)
    if found is None:
        found = []
        for index, field in enumerate(_poll_fields()):
            col = field.cached_col
            converters = conn.ops.get_db_converters(col) + col.get_db_converters(conn)
            if converters:
                found.append((index, col, converters))
        _converters[conn] = found
    return found


def get_visible_job(job_id: str, principal: Principal, request_type: str) -> PolledJob:
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
