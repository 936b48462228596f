"""The job list's query string: ``GET /v1/async/jobs?limit=&after=&status=&request_type=&key=``.

Read strictly, like a submit's body: a bad value, a repeated parameter or one this route does
not know is a 400 naming it, never a silently ignored filter.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from django.http import QueryDict

from gateway.access.principals import Principal
from gateway.http.errors import InvalidRequest
from jobs.models import JobStatus, RequestType

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
PARAMS = ("limit", "after", "status", "request_type", "key")

_DIGITS = re.compile(r"[0-9]{1,4}")  # ASCII only: int() would take other scripts' digits too


@dataclass(frozen=True)
class JobListQuery:
    """Which page of whose jobs: ``after`` is the last job id of the page before."""

    limit: int = DEFAULT_LIMIT
    after: uuid.UUID | None = None
    status: str | None = None
    request_type: str | None = None
    key: str | None = None  # a virtual key's name; an admin's filter


def read_list_query(params: QueryDict, principal: Principal) -> JobListQuery:
    for name in params:
        if name not in PARAMS:
            raise _invalid(name, f"Unknown query parameter {name!r}.", code="unknown_parameter")
    values: dict[str, str] = {}
    for name in PARAMS:
        given = params.getlist(name)
        if len(given) > 1:
            raise _invalid(name, f"{name}: give it once.")
        if given:
            values[name] = given[0]
    key = values.get("key")
    if key is not None and not principal.is_admin:
        raise _invalid("key", "key: only an admin token may list another key's jobs.")
    return JobListQuery(
        limit=_limit(values.get("limit")),
        after=_after(values.get("after")),
        status=_choice("status", values.get("status"), JobStatus.values),
        request_type=_choice("request_type", values.get("request_type"), RequestType.values),
        key=_non_empty("key", key),
    )


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise _invalid("limit", f"limit: an integer from 1 to {MAX_LIMIT}.")
    return int(value)


def _after(value: str | None) -> uuid.UUID | None:
    """A job id in the form the API answers it (36 characters, dashed)."""
    if value is None:
        return None
    try:
        job_id = uuid.UUID(value)
    except ValueError:
        job_id = None
    if job_id is None or str(job_id) != value.lower():
        raise _invalid("after", "after: a job id, as the list answers it (last_id).")
    return job_id


def _choice(name: str, value: str | None, choices: list[str]) -> str | None:
    if value is None or value in choices:
        return value
    raise _invalid(name, f"{name}: one of {', '.join(choices)}.")


def _non_empty(name: str, value: str | None) -> str | None:
    if value == "":
        raise _invalid(name, f"{name}: must not be empty.")
    return value


def _invalid(param: str, message: str, *, code: str = "invalid_parameter") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)
