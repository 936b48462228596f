"""A finished job is charged once, by its terminal write, to the model that served it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from gateway.access.models import KeySpend
from jobs import services
from jobs.charges import charge_for
from jobs.models import AsyncJob, JobStatus
from jobs.services import Finish
from providers import pricing
from providers.models import ModelPrice
from tests.factories import AsyncJobFactory, VirtualKeyFactory

pytestmark = pytest.mark.django_db

# 1 USD per million prompt tokens, 2 per million completion tokens: 5 + 7 tokens cost 0.000019.
PER_JOB = Decimal("0.000019")


@pytest.fixture(autouse=True)
def _prices() -> Any:
    pricing.clear_cache()
    ModelPrice.objects.create(
        provider="openai", model="gpt-test", input_per_million=1, output_per_million=2
    )
    yield
    pricing.clear_cache()


def result(prompt: int = 5, completion: int = 7) -> dict[str, Any]:
    return {
        "object": "text_completion",
        "choices": [{"text": "hi", "index": 0}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }


def claim(worker_id: str) -> AsyncJob:
    [claimed] = services.claim_pending_jobs(1, worker_id)
    return claimed


def finish(job: AsyncJob, worker_id: str, **fields: Any) -> bool:
    values: dict[str, Any] = {
        "result_ttl": 60,
        "status_code": 200,
        "result": result(),
        "served_by": job.model_requested,
        "virtual_key_id": job.virtual_key_id,
    }
    [written] = services.finish_jobs(worker_id, [Finish(job.pk, **(values | fields))])
    return written


def ledger(key: Any) -> list[tuple[str, Decimal, int, int, int, int]]:
    return list(
        KeySpend.objects.filter(virtual_key=key).values_list(
            "model",
            "spend_usd",
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "unpriced_requests",
        )
    )


def test_a_completed_job_stores_its_cost_and_is_added_to_its_keys_ledger():
    job = AsyncJobFactory()
    finish(claim("w"), "w")

    job.refresh_from_db()
    assert (job.status, job.cost_usd, job.unpriced) == (JobStatus.COMPLETED, PER_JOB, False)
    assert ledger(job.virtual_key) == [("openai/gpt-test", PER_JOB, 1, 5, 7, 0)]
    assert KeySpend.objects.get().day == job.completed_at.date()


def test_a_finish_applied_twice_charges_once():
    job = AsyncJobFactory()
    claimed = claim("w")
    assert finish(claimed, "w") is True
    assert finish(claimed, "w") is False
    assert ledger(job.virtual_key) == [("openai/gpt-test", PER_JOB, 1, 5, 7, 0)]


def test_a_worker_killed_after_the_upstream_answered_is_charged_once_after_recovery(dispatched):
    job = AsyncJobFactory()
    claim("killed-worker")  # the upstream answered; the worker died before its finish
    AsyncJob.objects.filter(pk=job.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.redispatch_stale_jobs()["requeued"] == 1
    assert not KeySpend.objects.exists()  # nothing was charged for the lost answer

    rerun = claim("second-worker")
    assert finish(rerun, "second-worker") is True
    # Had the first worker come back to life, its late finish would write nothing.
    assert finish(rerun, "killed-worker") is False

    job.refresh_from_db()
    assert (job.status, job.cost_usd, job.attempts) == (JobStatus.COMPLETED, PER_JOB, 2)
    assert ledger(job.virtual_key) == [("openai/gpt-test", PER_JOB, 1, 5, 7, 0)]


def test_a_failed_job_without_usage_charges_nothing():
    job = AsyncJobFactory()
    error = {"error": {"type": "api_error", "code": "upstream_error", "message": "x"}}
    finish(claim("w"), "w", status_code=502, result=None, error=error, served_by=None)
    job.refresh_from_db()
    assert (job.status, job.cost_usd) == (JobStatus.FAILED, None)
    assert not KeySpend.objects.exists()


def test_a_cancelled_job_charges_nothing_when_its_worker_finishes():
    job = AsyncJobFactory()
    claimed = claim("w")
    AsyncJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
    assert finish(claimed, "w") is False
    assert AsyncJob.objects.get(pk=job.pk).cost_usd is None
    assert not KeySpend.objects.exists()


def test_the_model_that_served_after_a_fallback_is_charged():
    ModelPrice.objects.create(
        provider="anthropic", model="claude-test", input_per_million=10, output_per_million=10
    )
    job = AsyncJobFactory(fallbacks=["anthropic/claude-test"])
    finish(claim("w"), "w", served_by="anthropic/claude-test")
    assert ledger(job.virtual_key) == [("anthropic/claude-test", Decimal("0.00012"), 1, 5, 7, 0)]


def test_an_unpriced_model_is_charged_zero_and_counted():
    job = AsyncJobFactory(provider="vllm", model="homegrown")
    finish(claim("w"), "w", served_by="vllm/homegrown")
    job.refresh_from_db()
    assert (job.cost_usd, job.unpriced) == (Decimal(0), True)
    assert ledger(job.virtual_key) == [("vllm/homegrown", Decimal(0), 1, 5, 7, 1)]


def test_a_batch_sums_each_keys_jobs_per_model():
    key, other = VirtualKeyFactory(), VirtualKeyFactory()
    jobs = [AsyncJobFactory(virtual_key=k) for k in (key, key, other)]
    claimed = services.claim_pending_jobs(10, "w")
    finishes = [
        Finish(
            job.pk,
            60,
            200,
            result(),
            served_by="openai/gpt-test",
            virtual_key_id=job.virtual_key_id,
        )
        for job in claimed
    ]
    assert services.finish_jobs("w", finishes) == [True, True, True]
    assert len(jobs) == 3
    assert ledger(key) == [("openai/gpt-test", 2 * PER_JOB, 2, 10, 14, 0)]
    assert ledger(other) == [("openai/gpt-test", PER_JOB, 1, 5, 7, 0)]


def test_an_admin_tokens_job_stores_its_cost_but_has_no_ledger_row():
    job = AsyncJobFactory(virtual_key=None)
    finish(claim("w"), "w")
    assert AsyncJob.objects.get(pk=job.pk).cost_usd == PER_JOB
    assert not KeySpend.objects.exists()


def test_the_ledger_outlives_the_purge_of_the_jobs_it_counts():
    job = AsyncJobFactory()
    finish(claim("w"), "w", result_ttl=1)
    AsyncJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.purge_expired_jobs() == 1
    assert ledger(job.virtual_key) == [("openai/gpt-test", PER_JOB, 1, 5, 7, 0)]


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}, (5, 7)),
        ({"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}, (5, 7)),  # responses
        ({"prompt_tokens": 9, "total_tokens": 9}, (9, 0)),  # embeddings
        ({"prompt_tokens": "5", "completion_tokens": -1}, (0, 0)),
        (None, (0, 0)),
    ],
)
def test_tokens_are_read_from_every_request_types_usage(usage, tokens):
    charged = charge_for({"usage": usage}, "openai/gpt-test", 1)
    assert charged is not None
    assert (charged.prompt_tokens, charged.completion_tokens) == tokens
