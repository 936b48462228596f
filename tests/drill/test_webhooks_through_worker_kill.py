"""Scenario 8's own conditions: every job ended and every job's notice arrived, verified, at
least once, the notices in flight in the killed worker again."""

from __future__ import annotations

from typing import Any

import pytest

from drill.scenarios import HOOKED_JOBS, webhook_checks

JOBS = HOOKED_JOBS


def summary(**overrides: Any) -> dict[str, Any]:
    return {"accepted": JOBS, "completed": JOBS, "failed": {}} | overrides


def notices(**overrides: Any) -> dict[str, Any]:
    return {
        "received": JOBS + 50,
        "invalid_signatures": 0,
        "jobs_notified": JOBS,
        "unnotified": 0,
        "duplicates": 50,
        "jobs_with_several_webhook_ids": 0,
        "notices_of_unknown_jobs": 0,
    } | overrides


def figures(notices_: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "webhooks": notices_ or notices(),
        "held_at_kill": 50,
        "held_arrived_again": 50,
        "deliveries_at_end": {"delivered": JOBS},
    } | overrides


def failed(s: dict[str, Any], n: dict[str, Any], f: dict[str, Any]) -> list[str]:
    return [name for name, ok in webhook_checks(s, f | {"webhooks": n}).items() if not ok]


def test_every_notice_at_least_once_with_duplicates_passes_every_check():
    assert failed(summary(), notices(), figures()) == []


def test_failed_jobs_have_ended_too():
    assert (
        failed(summary(completed=JOBS - 2, failed={"upstream_timeout": 2}), notices(), figures())
        == []
    )


@pytest.mark.parametrize(
    ("args", "check"),
    [
        ((summary(completed=JOBS - 1), notices(), figures()), "every_job_ended"),
        (
            (summary(), notices(), figures(held_at_kill=0, held_arrived_again=0)),
            "notices_in_flight_at_kill",
        ),
        (
            (summary(), notices(jobs_notified=JOBS - 1, unnotified=1), figures()),
            "every_job_notified",
        ),
        ((summary(), notices(invalid_signatures=1), figures()), "every_signature_valid"),
        (
            (summary(), notices(jobs_with_several_webhook_ids=1), figures()),
            "one_webhook_id_per_job",
        ),
        ((summary(), notices(notices_of_unknown_jobs=2), figures()), "no_notice_of_another_job"),
        ((summary(), notices(), figures(held_arrived_again=49)), "held_notices_sent_again"),
        (
            (
                summary(),
                notices(),
                figures(deliveries_at_end={"delivered": JOBS - 1, "sending": 1}),
            ),
            "every_delivery_row_delivered",
        ),
    ],
    ids=[
        "unfinished",
        "nothing-held",
        "lost",
        "bad-signature",
        "two-ids",
        "stranger",
        "not-resent",
        "row-stuck",
    ],
)
def test_each_figure_out_of_line_fails_its_own_check_alone(args, check):
    assert failed(*args) == [check]
