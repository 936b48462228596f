"""The ``Idempotency-Key`` header of a submit: the same key and request give the same job.

It follows the IETF httpapi draft "The Idempotency-Key HTTP Header Field":

- The value is a Structured Field string, ``Idempotency-Key: "8e03978e-40d5"``; a bare value,
  ``Idempotency-Key: 8e03978e-40d5``, is accepted as the same key. Unquoted, it is 1 to
  MAX_KEY_LENGTH printable ASCII characters (space to ``~``); anything else is a 400 naming the
  header. A quoted value escapes only ``\\"`` and ``\\\\`` and carries no parameters.
- A key belongs to its caller: the virtual key (directly or through its JWT), or, for admin
  JWTs, the admin (every admin token shares one scope). It is kept IDEMPOTENCY_WINDOW.
- The request is fingerprinted: its request type (the route), its result TTL (what the job keeps)
  and its body's canonical JSON (key order and whitespace do not matter). The same key with the
  same fingerprint answers the first submit's job as a poll of it would now, 202 with its
  ``Location`` and ``Idempotent-Replayed: true``; no job is made and nothing is sent upstream.
  Another fingerprint is a 422. A job already purged (its result TTL is shorter than the window)
  or expired is a 410: the key still refuses to run the request again.
- Two submits racing with one key: the unique constraint on the key lets one commit; the other
  waits for it, then answers its job. So the draft's 409 (a request still in progress) is never
  needed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from gateway.access.models import VirtualKey
from gateway.access.principals import Principal
from gateway.http.errors import GatewayError, InvalidRequest
from jobs import sql
from jobs.models import IdempotencyKey
from jobs.request_types import RequestKind
from jobs.sql import PolledJob

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_KEY_LENGTH = 255

_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")
# An sf-string (RFC 8941, 3.3.3): printable ASCII, where " and \ appear escaped by a \.
_SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_SF_ESCAPE = re.compile(r"\\([\"\\])")


class IdempotencyKeyReused(GatewayError):
    status_code = 422
    code = "idempotency_key_reused"


class IdempotentJobGone(GatewayError):
    status_code = 410
    code = "idempotent_job_expired"


@dataclass(frozen=True)
class IdempotentSubmit:
    """A submit that carried a key: whose key, the key, and what the request was."""

    virtual_key: VirtualKey | None  # None: the admin's scope
    key: str
    fingerprint: str


def idempotency_key_from(request: HttpRequest) -> str | None:
    """The header's key, unquoted; None without the header; a 400 naming it when malformed."""
    raw = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if raw is None:
        return None
    # Only HTTP's optional whitespace (spaces, tabs) surrounds a value.
    value = raw.strip(" \t")
    if value.startswith('"'):
        quoted = _SF_STRING.fullmatch(value)
        key = _SF_ESCAPE.sub(r"\1", quoted.group(1)) if quoted else ""
    else:
        key = value
    if not _KEY.fullmatch(key):
        raise InvalidRequest(
            f"{IDEMPOTENCY_HEADER} must be a string of 1 to {MAX_KEY_LENGTH} printable ASCII "
            'characters, quoted ("...") or bare.',
            param=IDEMPOTENCY_HEADER,
            code="invalid_idempotency_key",
        )
    return key


def fingerprint(kind: RequestKind, result_ttl: int, data: Any) -> str:
    """What makes two submits the same request: route, result TTL and the body's canonical
    JSON."""
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    text = f"{kind.request_type.value}\n{result_ttl}\n{body}"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def idempotent_submit(
    request: HttpRequest, principal: Principal, kind: RequestKind, data: Any, result_ttl: int
) -> IdempotentSubmit | None:
    """The submit's key and fingerprint; None (and no other work) without the header."""
    key = idempotency_key_from(request)
    if key is None:
        return None
    return IdempotentSubmit(principal.virtual_key, key, fingerprint(kind, result_ttl, data))


def earlier_job(once: IdempotentSubmit) -> PolledJob | None:
    """The job an earlier submit with this key made, as a poll reads it; None when the key is
    new (or its window has passed). A 422 when that submit was another request, a 410 when its
    job is gone."""
    cutoff = timezone.now() - IDEMPOTENCY_WINDOW
    found = list(
        IdempotencyKey.objects.filter(
            virtual_key=once.virtual_key, key=once.key, created_at__gt=cutoff
        ).values_list("fingerprint", "job_id")[:1]
    )
    if not found:
        return None
    ((stored_fingerprint, job_id),) = found
    if stored_fingerprint != once.fingerprint:
        raise IdempotencyKeyReused(
            f"This {IDEMPOTENCY_HEADER} was used with another request (body, route or result "
            "TTL) in the last 24 hours; use a new key for a new request.",
            param=IDEMPOTENCY_HEADER,
        )
    job = sql.read_polled_job(job_id)
    if job is None or (job.expires_at is not None and job.expires_at <= timezone.now()):
        raise IdempotentJobGone(
            f"The job this {IDEMPOTENCY_HEADER} made has expired and its result is gone; the "
            "key is kept 24 hours, so use a new key to run the request again.",
            param=IDEMPOTENCY_HEADER,
        )
    return job


def replayed_job(once: IdempotentSubmit) -> PolledJob:
    """The job of the submit that won a race for this key (it committed before ours failed)."""
    job = earlier_job(once)
    if job is None:  # its row went between the conflict and this read: purged, or its key
        raise IdempotentJobGone(
            f"The job this {IDEMPOTENCY_HEADER} made is gone.", param=IDEMPOTENCY_HEADER
        )
    return job
