"""A virtual key's limits, checked at submit: requests per minute, tokens per minute and jobs
pending or processing at once (README, "Limits").

Each key with limits has one counters row (``KeyCounters``), and a submit passes only by updating
it: ``sql.insert_counted_job`` runs one conditional UPDATE on the row (pending below the cap, this
minute's requests and tokens below theirs) and inserts the job only if the UPDATE did, in the same
statement on Postgres, in the same transaction on SQLite. The row lock orders concurrent submits
of one key across every web process and host, and the WHERE is checked again on the row as the
previous submit committed it, so two submits racing for the last slot cannot both win. A key
with a budget passes the same way: the UPDATE's WHERE also sums the key's ledger for the period
(``gateway.access.budgets``), so a budget adds no statement of its own, and a refusal
is then told apart (402 or 429) by reading the ledger and the row again. Keys with neither limits
nor a budget never touch the row: no query, no transaction.

Why a counter rather than counting the key's jobs at submit: a COUNT under a row lock needs the
lock and the count in two statements (a statement's snapshot predates the lock it waits for, so
one statement would miss a job committed meanwhile), so two extra round trips on every submit,
and its cost grows with the cap. The counter costs none on Postgres, and it cannot drift, because
every transition into or out of pending/processing changes it in the transaction that writes the
job's state: the submit (+1), the worker's finish, a cancel and a stale job's failure (-1, with
the finished job's tokens), an admin's retry of a failed job (+1) and an admin's deletion of
active jobs (-1). A crash anywhere rolls the job and its count back together. Only jobs submitted
under limits are counted (``AsyncJob.counted``), so limits set on a key with jobs in flight
count from its next submit on.

Windows are clock minutes (UTC, minutes since the Unix epoch): ``requests`` counts this minute's
accepted submits, ``tokens`` the prompt and completion tokens of the key's counted jobs that
finished this minute (their usage, counted in the finish's transaction, so once). A counter of
an earlier minute counts as zero, and a refusal's ``Retry-After`` is the seconds until the next
minute.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

from django.db.models import Case, F, Value, When

from gateway.access.budgets import first_ledger_day, period_start
from gateway.access.models import VirtualKey
from gateway.http.errors import TooManyRequests
from jobs.models import AsyncJob, KeyCounters
from jobs.sql import KeyGate

# A pending slot frees when one of the key's jobs ends, which nothing predicts; a client told
# to wait this long asks again soon without spinning.
PENDING_RETRY_AFTER = 1

_IDS_PER_QUERY = 500  # under SQLite's limit on a statement's parameters


class LimitReached(Exception):
    """The key's counters refused a submit (or the key has no counters row yet)."""


def minute_of(now: datetime) -> int:
    """The clock minute ``now`` falls in, as minutes since the Unix epoch."""
    return int(now.timestamp()) // 60


def seconds_to_next_minute(now: datetime) -> int:
    """Whole seconds from ``now`` until its minute ends: 1 to 60."""
    return 60 - int(now.timestamp()) % 60


def gate_for(key: VirtualKey | None, now: datetime) -> KeyGate | None:
    """What a submit with ``key`` at ``now`` must pass; None when the key has neither limits
    nor a budget. A budget is checked in the same statement as the limits (``sql.KeyGate``)."""
    if key is None or not key.is_counted:
        return None
    spend_from = None
    if key.budget_usd is not None:
        start = period_start(key.budget_period, now, key.created_at)
        spend_from = first_ledger_day(key.budget_period, start)
    return KeyGate(
        key_id=key.pk,
        minute=minute_of(now),
        requests_per_minute=key.requests_per_minute,
        tokens_per_minute=key.tokens_per_minute,
        max_pending=key.max_pending,
        budget_usd=key.budget_usd,
        spend_from=spend_from,
    )


def refusal(gate: KeyGate, now: datetime) -> TooManyRequests | None:
    """The 429 for a submit the counters refused: the limit the key is at, and how long to
    wait. None when the key had no counters row (made now) or has room again: try again. (A
    spent budget is the caller's to find first: ``jobs.budget.ensure_within_budget``.)"""
    counters, created = KeyCounters.objects.get_or_create(virtual_key_id=gate.key_id)
    if created:
        return None
    this_minute = gate.minute
    wait = seconds_to_next_minute(now)
    limit = gate.requests_per_minute
    if limit is not None and counters.request_minute == this_minute and counters.requests >= limit:
        return TooManyRequests(
            f"This key's limit of {limit} requests per minute is reached; retry in {wait} s.",
            code="rate_limit_exceeded",
            retry_after=wait,
        )
    limit = gate.tokens_per_minute
    if limit is not None and counters.token_minute == this_minute and counters.tokens >= limit:
        return TooManyRequests(
            f"This key's jobs used {counters.tokens} tokens this minute, its limit is {limit} "
            f"tokens per minute; retry in {wait} s.",
            code="token_rate_limit_exceeded",
            retry_after=wait,
        )
    limit = gate.max_pending
    if limit is not None and counters.pending >= limit:
        return TooManyRequests(
            f"This key has {counters.pending} jobs pending or processing, its limit is {limit}; "
            "submit again when one has ended.",
            code="too_many_pending_jobs",
            retry_after=PENDING_RETRY_AFTER,
        )
    return None


def busy() -> TooManyRequests:
    """The 429 when submits of the key keep taking the room a retry finds (a rare race)."""
    return TooManyRequests(
        "This key's limits are being reached by concurrent submits; retry shortly.",
        code="rate_limit_exceeded",
        retry_after=1,
    )


def count_finished(tokens_by_job: Mapping[UUID | str, int], now: datetime) -> None:
    """Jobs that just finished: each counted one frees its key's slot and adds its tokens to
    the key's minute. Run in the transaction that wrote the terminal states."""
    ids = list(tokens_by_job)
    by_text = {str(job_id): tokens for job_id, tokens in tokens_by_job.items()}
    ended: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for start in range(0, len(ids), _IDS_PER_QUERY):
        rows = AsyncJob.objects.filter(
            pk__in=ids[start : start + _IDS_PER_QUERY], counted=True, virtual_key__isnull=False
        ).values_list("pk", "virtual_key_id")
        for job_id, key_id in rows:
            ended[key_id][0] += 1
            ended[key_id][1] += by_text[str(job_id)]
    _settle(ended, now)


def count_ended(key_id: int | None, now: datetime, jobs: int = 1) -> None:
    """Counted jobs of a key that ended without usage (cancelled, abandoned, deleted)."""
    if key_id is not None:
        _settle({key_id: [jobs, 0]}, now)


def count_restarted(key_id: int | None) -> None:
    """A counted job of the key is pending again (an admin's retry): it holds a slot again,
    whatever the cap, as it was accepted before."""
    if key_id is not None:
        KeyCounters.objects.filter(pk=key_id).update(pending=F("pending") + 1)


def _settle(ended: Mapping[int, list[int]], now: datetime) -> None:
    """Free ``jobs`` slots and add ``tokens`` to this minute, per key, keys in order (so two
    transactions settling the same keys never wait on each other in a cycle)."""
    minute = minute_of(now)
    for key_id in sorted(ended):
        jobs, tokens = ended[key_id]
        KeyCounters.objects.filter(pk=key_id).update(
            pending=F("pending") - jobs,
            tokens=Case(
                When(token_minute=minute, then=F("tokens") + tokens), default=Value(tokens)
            ),
            token_minute=minute,
        )
