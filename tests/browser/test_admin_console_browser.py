"""The admin as an operator sees it: Debian's headless Chromium logs in and opens each page.

It runs against pytest-django's live server (a real HTTP server on 127.0.0.1 over the test
database), types the password into the login form, and checks what each page shows: the job list
with its coloured statuses, short ids and durations, a search, a retried job's tries, the
dashboard, the providers (the environment's beside the admin's, keys masked) and the keys. Each
page is saved as a PNG: to a temporary directory, or with ``--screenshots docs/screenshots``
(``make screenshots``) to the pictures the docs show. Pictures are written, never compared.

The browser is Debian's ``chromium`` package (``apt-get install chromium``); Playwright drives
it and never downloads a browser of its own. Without it this test fails and says so.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from jobs import services
from jobs.models import AsyncJob, JobStatus, RequestType
from providers.models import ProviderConfig, ProviderKey
from tests.factories import AsyncJobFactory, VirtualKeyFactory

USERNAME, PASSWORD = "ops", "a-long-admin-password-for-the-browser"
STORED_PROVIDER_SECRET = "sk-acme-stored-secret-never-shown"
# Pages on a slow shared machine: every wait is generous.
TIMEOUT_MS = 60_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "Chromium was not found on PATH: the admin's browser test runs Debian's headless "
            "Chromium. Install it with `apt-get install chromium` (CI's .ci/run does).",
            pytrace=False,
        )
    return path


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    chosen = request.config.getoption("--screenshots")
    directory = Path(chosen) if chosen else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _job(age_minutes: float, wait: float | None, run: float | None, **fields: Any) -> AsyncJob:
    created = timezone.now() - timedelta(minutes=age_minutes)
    started = created + timedelta(seconds=wait) if wait is not None else None
    completed = started + timedelta(seconds=run) if started and run is not None else None
    job = AsyncJobFactory(started_at=started, completed_at=completed, **fields)
    AsyncJob.objects.filter(pk=job.pk).update(created_at=created)
    return job


def _fail(job: AsyncJob, code: int, error_code: str, message: str) -> None:
    now = timezone.now()
    AsyncJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED,
        attempts=1,
        started_at=now - timedelta(seconds=3),
        completed_at=now,
        expires_at=now + timedelta(hours=1),
        status_code=code,
        error={"status_code": code, "error": {"code": error_code, "message": message}},
    )


def make_operations(django_user_model: Any) -> dict[str, Any]:
    """An hour of traffic from three keys on two providers, and a job retried once."""
    django_user_model.objects.create_superuser(USERNAME, "ops@example.com", PASSWORD)
    web, batch, evals = (VirtualKeyFactory(name=n) for n in ("web-app", "batch-jobs", "evals"))
    acme = ProviderConfig.objects.create(name="acme", base_url="http://127.0.0.1:9/v1")
    stored = ProviderKey(provider=acme, label="primary")
    stored.set_key(STORED_PROVIDER_SECRET)
    stored.save()

    done = {"status": JobStatus.COMPLETED, "status_code": 200, "result": {"choices": []}}
    for minute, (wait, run) in enumerate([(0.2, 1.1), (0.4, 2.3), (0.3, 0.9), (1.2, 3.8)]):
        _job(
            50 - minute * 10,
            wait,
            run,
            provider="openai",
            model="gpt-4o-mini",
            virtual_key=web,
            **done,
        )
    for minute in range(3):
        _job(
            40 - minute * 5,
            2.0,
            6.5,
            provider="anthropic",
            model="claude-3-5-haiku",
            request_type=RequestType.CHAT_COMPLETION,
            virtual_key=batch,
            **done,
        )
    _job(
        3,
        0.5,
        None,
        provider="openai",
        model="gpt-4o",
        status=JobStatus.PROCESSING,
        virtual_key=evals,
    )
    _job(1, None, None, provider="anthropic", model="claude-3-5-sonnet", virtual_key=batch)
    _job(
        20,
        0.4,
        0.2,
        provider="openai",
        model="text-embedding-3-small",
        request_type=RequestType.EMBEDDING,
        status=JobStatus.CANCELLED,
        virtual_key=web,
    )

    retried = _job(
        30,
        0.3,
        None,
        provider="openai",
        model="gpt-4o-mini",
        virtual_key=evals,
        status=JobStatus.PROCESSING,
    )
    _fail(retried, 502, "upstream_error", "upstream answered 502 Bad Gateway")
    assert services.retry_job(retried)
    _fail(retried, 429, "rate_limited", "upstream answered 429 Too Many Requests")
    return {"retried": AsyncJob.objects.get(pk=retried.pk), "keys": (web, batch, evals)}


def _shoot(page: Page, directory: Path, name: str) -> None:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_an_operator_logs_in_and_reads_every_console_page(
    live_server: Any, django_user_model: Any, screenshots: Path
) -> None:
    executable = chromium()
    # Every row is written before the browser starts: Playwright's driver keeps an event loop
    # in this thread, where Django refuses database calls.
    made = make_operations(django_user_model)
    retried: AsyncJob = made["retried"]
    base = live_server.url

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, timeout=TIMEOUT_MS
        )
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)

            # Log in through the form.
            page.goto(f"{base}/admin/login/?next=/admin/")
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            expect(page.locator("#site-name")).to_be_visible()
            expect(page.get_by_role("link", name="Dashboard")).to_be_visible()
            _shoot(page, screenshots, "admin-index")

            # The job list: coloured statuses, short ids, queue wait and run time.
            page.goto(f"{base}/admin/jobs/asyncjob/")
            expect(page.locator("#result_list")).to_be_visible()
            expect(page.locator("th.column-queue_wait")).to_contain_text("Queue wait")
            expect(page.locator("th.column-run_time")).to_contain_text("Run time")
            failed_badge = page.locator(".job-status-failed").first
            expect(failed_badge).to_be_visible()
            expect(failed_badge).to_have_css("background-color", "rgb(248, 215, 218)")
            expect(page.locator(".job-status-completed").first).to_have_css(
                "color", "rgb(15, 81, 50)"
            )
            expect(page.locator("#result_list tbody tr")).to_have_count(11)
            short_id = str(retried.id)[:8]
            expect(page.locator(f"code[title='{retried.id}']")).to_have_text(short_id)
            expect(page.locator("#result_list")).to_contain_text("6.5 s")
            _shoot(page, screenshots, "job-list")

            # Search by part of a model, then by the short id.
            page.fill("#searchbar", "haiku")
            page.press("#searchbar", "Enter")
            expect(page.locator("#result_list tbody tr")).to_have_count(3)
            _shoot(page, screenshots, "job-search-by-model")
            page.fill("#searchbar", short_id)
            page.press("#searchbar", "Enter")
            expect(page.locator("#result_list tbody tr")).to_have_count(1)

            # The retried job: both tries, the first one's error kept.
            page.click(f"code[title='{retried.id}']")
            tries = page.locator("table.job-tries tbody tr")
            expect(tries).to_have_count(2)
            expect(tries.nth(0)).to_contain_text("upstream_error: upstream answered 502")
            expect(tries.nth(1)).to_contain_text("rate_limited: upstream answered 429")
            _shoot(page, screenshots, "job-page")

            # The dashboard, from the index's link.
            page.goto(f"{base}/admin/")
            page.get_by_role("link", name="Dashboard").click()
            expect(page.locator("#card-total .value")).to_have_text("11")
            # 1 failed of 8 finished (7 completed): a cancelled job did not finish.
            expect(page.locator("#card-error-rate .value")).to_have_text("12.5 %")
            expect(page.locator("#jobs-by-provider")).to_contain_text("anthropic")
            top = page.locator("#top-keys tbody tr")
            expect(top.nth(0)).to_contain_text("web-app")
            _shoot(page, screenshots, "dashboard")

            # Providers: the environment's beside the admin's, no key shown.
            page.goto(f"{base}/admin/providers/providerconfig/")
            environment = page.locator("#environment-providers")
            expect(environment).to_contain_text("From the environment (read-only)")
            expect(environment).to_contain_text("http://127.0.0.1:9/v1")
            expect(environment).to_contain_text("••••••••")
            expect(page.locator("#result_list")).to_contain_text("acme")
            html = page.content()
            for secret in ("sk-upstream-openai-secret", "sk-ant-upstream-secret"):
                assert secret not in html
            assert STORED_PROVIDER_SECRET not in html
            _shoot(page, screenshots, "providers")

            # Keys.
            page.goto(f"{base}/admin/gateway/virtualkey/")
            for key in made["keys"]:
                expect(page.locator("#result_list")).to_contain_text(key.name)
                assert key.raw not in page.content()
            _shoot(page, screenshots, "keys")
        finally:
            browser.close()
