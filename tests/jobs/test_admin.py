"""The jobs admin as an ops console: columns, search, try history and the dashboard page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from jobs.admin import AsyncJobAdmin, format_duration
from jobs.models import AsyncJob, JobStatus
from tests.factories import AsyncJobFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:jobs_asyncjob_changelist"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def job_timed(wait: float, run: float | None, **fields: Any) -> AsyncJob:
    """A job created now minus a minute, started ``wait`` seconds later, ended ``run`` after."""
    created = timezone.now() - timedelta(minutes=1)
    started = created + timedelta(seconds=wait)
    completed = started + timedelta(seconds=run) if run is not None else None
    defaults: dict[str, Any] = {"status": JobStatus.COMPLETED if run is not None else "processing"}
    job = AsyncJobFactory(**(defaults | fields), started_at=started, completed_at=completed)
    AsyncJob.objects.filter(pk=job.pk).update(created_at=created)  # auto_now_add on insert
    job.refresh_from_db()
    return job


def listed(admin_client: Any, **query: Any) -> list[AsyncJob]:
    response = admin_client.get(reverse(CHANGELIST), query)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


# --- Columns ------------------------------------------------------------------------------------


def test_list_shows_a_short_id_with_the_full_id_on_hover(admin_client):
    job = AsyncJobFactory()
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert f"<code title='{job.id}'>{str(job.id)[:8]}</code>" in html


@pytest.mark.parametrize(
    ("status", "colour"),
    [
        (JobStatus.PENDING, "#664d03"),
        (JobStatus.PROCESSING, "#084298"),
        (JobStatus.COMPLETED, "#0f5132"),
        (JobStatus.FAILED, "#842029"),
        (JobStatus.CANCELLED, "#41464b"),
    ],
)
def test_list_colours_each_status(admin_client, status, colour):
    AsyncJobFactory(status=status)
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert f"job-status-{status}' style='color: {colour};" in html


def test_list_shows_queue_wait_and_run_time(admin_client):
    job_timed(wait=2.5, run=1.25)
    job_timed(wait=90, run=4000)
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    for shown in ("2.5 s", "1.2 s", "1 min 30 s", "1 h 6 min"):
        assert f">{shown}</td>" in html, shown


def test_list_shows_a_dash_for_a_job_not_yet_started_or_ended(admin_client):
    AsyncJobFactory(status=JobStatus.PENDING)
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert html.count('<td class="field-queue_wait">-</td>') == 1
    assert html.count('<td class="field-run_time">-</td>') == 1


@pytest.mark.parametrize(("column", "wait_first"), [("queue_wait", True), ("run_time", False)])
def test_list_sorts_by_queue_wait_and_run_time(admin_client, column, wait_first):
    long_wait = job_timed(wait=30, run=1)
    long_run = job_timed(wait=1, run=30)
    position = AsyncJobAdmin.list_display.index(column) + 1
    longest_first = listed(admin_client, o=f"-{position}")
    assert longest_first == ([long_wait, long_run] if wait_first else [long_run, long_wait])
    assert listed(admin_client, o=str(position)) == longest_first[::-1]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.0421, "42 ms"), (3.04, "3.0 s"), (59.9, "59.9 s"), (61, "1 min 1 s"), (7322, "2 h 2 min")],
)
def test_durations_read_in_the_unit_that_fits(seconds, shown):
    assert format_duration(timedelta(seconds=seconds)) == shown


# --- Search -------------------------------------------------------------------------------------


def test_search_by_the_short_id_finds_the_job(admin_client):
    job, other = AsyncJobFactory(), AsyncJobFactory()
    assert listed(admin_client, q=str(job.id)[:8]) == [job]
    assert listed(admin_client, q=str(other.id)[:6].upper()) == [other]


def test_search_by_an_id_prefix_across_a_hyphen_finds_the_job(admin_client):
    job = AsyncJobFactory()
    AsyncJobFactory()
    assert listed(admin_client, q=str(job.id)[:13]) == [job]
    assert listed(admin_client, q=str(job.id)[:13].replace("-", "")) == [job]


def test_search_by_an_id_prefix_no_job_has_finds_nothing(admin_client):
    job = AsyncJobFactory()
    unused = "0" if str(job.id)[0] != "0" else "1"
    assert listed(admin_client, q=unused * 8) == []


def test_search_by_part_of_a_model_ignores_case(admin_client):
    mini = AsyncJobFactory(model="gpt-4o-mini")
    big = AsyncJobFactory(model="gpt-4o")
    AsyncJobFactory(model="claude-3-haiku", provider="anthropic")
    assert set(listed(admin_client, q="GPT-4o")) == {mini, big}
    assert listed(admin_client, q="o-mi") == [mini]


def test_search_matches_a_model_that_looks_like_an_id_prefix(admin_client):
    job = AsyncJobFactory(model="deadbeef-large")
    assert job in listed(admin_client, q="deadbeef")


# --- Try history --------------------------------------------------------------------------------


def fail(job: AsyncJob, code: int, message: str) -> None:
    """The job ends failed, as a worker's finish leaves it."""
    now = timezone.now()
    error = {"status_code": code, "error": {"code": f"e{code}", "message": message}}
    AsyncJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED,
        attempts=1,
        started_at=now - timedelta(seconds=2),
        completed_at=now,
        expires_at=now + timedelta(hours=1),
        status_code=code,
        error=error,
    )


def retry(admin_client: Any, job: AsyncJob, capture: Any) -> None:
    data = {"action": "retry_failed", "_selected_action": [str(job.pk)]}
    with capture(execute=True):
        assert admin_client.post(reverse(CHANGELIST), data).status_code == 302


def test_retried_job_keeps_every_earlier_error_on_its_page(
    admin_client, dispatched, django_capture_on_commit_callbacks
):
    job = AsyncJobFactory(status=JobStatus.PROCESSING)
    fail(job, 502, "upstream down")
    retry(admin_client, job, django_capture_on_commit_callbacks)
    fail(job, 429, "rate limited <again>")
    retry(admin_client, job, django_capture_on_commit_callbacks)

    job.refresh_from_db()
    assert job.status == JobStatus.PENDING and job.error is None
    assert [(t["status"], t["status_code"]) for t in job.tries] == [
        ("failed", 502),
        ("failed", 429),
    ]
    assert job.tries[1]["error"]["error"]["message"] == "rate limited <again>"
    assert all(t["retried_at"] and t["completed_at"] for t in job.tries)

    page = admin_client.get(reverse("admin:jobs_asyncjob_change", args=[job.pk]))
    html = page.content.decode()
    assert "e502: upstream down" in html
    assert escape("e429: rate limited <again>") in html
    assert "rate limited <again>" not in html  # escaped, never rendered as HTML
    # Two earlier tries and the current one, pending.
    assert html.count("<tr><td>") == 3
    assert "<tr><td>3</td><td><span class='job-status job-status-pending'" in html


def test_job_page_of_a_job_never_retried_shows_its_one_try(admin_client):
    job = AsyncJobFactory(status=JobStatus.PROCESSING)
    fail(job, 500, "boom")
    html = admin_client.get(reverse("admin:jobs_asyncjob_change", args=[job.pk])).content.decode()
    assert "<tr><td>1</td><td><span class='job-status job-status-failed'" in html
    assert "e500: boom" in html


def test_job_page_shows_queue_wait_and_run_time(admin_client):
    job = job_timed(wait=3, run=12)
    html = admin_client.get(reverse("admin:jobs_asyncjob_change", args=[job.pk])).content.decode()
    assert "3.0 s" in html and "12.0 s" in html


# --- Dashboard ----------------------------------------------------------------------------------


def test_index_links_to_the_dashboard(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:jobs_asyncjob_dashboard") in html


def test_job_list_links_to_the_dashboard(admin_client):
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert reverse("admin:jobs_asyncjob_dashboard") in html


def test_dashboard_shows_the_last_hours_numbers(admin_client):
    for run in (1, 2, 3):
        job_timed(wait=1, run=run, provider="openai")
    job_timed(wait=1, run=10, provider="anthropic", status=JobStatus.FAILED)
    response = admin_client.get(reverse("admin:jobs_asyncjob_dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<div class="label">jobs</div><div class="value">4</div>' in html
    assert '<div class="value">25.0 %</div>' in html  # 1 failed of 4 finished
    assert '<div class="label">run time p50</div><div class="value">2.5 s</div>' in html
    assert ">openai</a></td>" in html and ">anthropic</a></td>" in html


def test_dashboard_needs_a_staff_login(client):
    response = client.get(reverse("admin:jobs_asyncjob_dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_dashboard_is_refused_to_staff_who_may_not_see_jobs(client, django_user_model):
    user = django_user_model.objects.create_user("staff", password="a-password", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("admin:jobs_asyncjob_dashboard")).status_code == 403
