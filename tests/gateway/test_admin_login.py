"""Admin logins are throttled per username and client address; the API is left alone."""

from __future__ import annotations

import io
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from gateway.admin_login import forwarded_client_ip, peer_client_ip
from jobs.models import AsyncJob
from tests.gateway.test_settings import _setting
from tests.helpers import SUBMIT_URL, VALID_BODY, bearer

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password"
LIMIT = 5


@pytest.fixture(autouse=True)
def _throttle(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.AXES_CLIENT_IP_CALLABLE = "gateway.admin_login.peer_client_ip"


@pytest.fixture
def root() -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


def log_in(client: Client, password: str, username: str = "root", **extra: Any) -> Any:
    data = {"username": username, "password": password}
    return client.post(reverse("admin:login"), data, **extra)


def fail(client: Client, times: int, username: str = "root", **extra: Any) -> list[int]:
    return [log_in(client, "wrong", username, **extra).status_code for _ in range(times)]


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_failures_below_the_limit_show_the_login_form_again(root):
    assert fail(Client(), LIMIT - 1) == [200] * (LIMIT - 1)


def test_the_limit_th_failure_locks_the_username_and_address_out_with_429(root):
    client = Client()
    statuses = fail(client, LIMIT)
    assert statuses[:-1] == [200] * (LIMIT - 1)
    assert statuses[-1] == 429


def test_a_locked_out_pair_is_refused_even_with_the_right_password(root):
    client = Client()
    fail(client, LIMIT)
    response = log_in(client, PASSWORD)
    assert response.status_code == 429
    assert not signed_in(client)


def test_the_lockout_page_says_why_and_when_to_retry(root):
    client = Client()
    fail(client, LIMIT)
    response = log_in(client, PASSWORD)
    assert response["Retry-After"] == str(15 * 60)
    html = response.content.decode()
    assert "Too many failed logins" in html
    assert f"After {LIMIT} failed attempts" in html
    assert "15 minutes" in html


def test_changing_the_user_agent_does_not_reset_the_count(root):
    client = Client()
    for n in range(LIMIT - 1):
        log_in(client, "wrong", HTTP_USER_AGENT=f"agent-{n}")
    assert log_in(client, "wrong", HTTP_USER_AGENT="another-agent").status_code == 429


def test_the_same_username_from_another_address_can_still_log_in(root):
    fail(Client(REMOTE_ADDR="203.0.113.7"), LIMIT)
    client = Client(REMOTE_ADDR="203.0.113.8")
    assert log_in(client, PASSWORD).status_code == 302
    assert signed_in(client)


def test_another_username_from_the_same_address_can_still_log_in(root):
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    client = Client()
    fail(client, LIMIT)
    assert log_in(client, PASSWORD, username="ops").status_code == 302


def test_the_lockout_ends_after_the_cool_off(root):
    client = Client()
    fail(client, LIMIT)
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16)
    )
    assert log_in(client, PASSWORD).status_code == 302
    assert signed_in(client)


def test_resetting_the_username_lifts_the_lockout_early(root):
    client = Client()
    fail(client, LIMIT)
    call_command("axes_reset_username", "root", stdout=io.StringIO())
    assert log_in(client, PASSWORD).status_code == 302


def test_a_successful_login_resets_the_count(root):
    client = Client()
    fail(client, LIMIT - 1)
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    assert fail(client, LIMIT - 1) == [200] * (LIMIT - 1)


def test_failed_attempts_are_kept_without_the_password(root):
    fail(Client(), 1)
    attempt = AccessAttempt.objects.get()
    assert "wrong" not in attempt.post_data
    assert attempt.failures_since_start == 1


def test_api_requests_are_served_while_the_admin_login_is_locked(root, key, dispatched):
    fail(Client(), LIMIT)
    api = Client()
    submitted = api.post(
        SUBMIT_URL, VALID_BODY, content_type="application/json", headers=bearer(key.raw)
    )
    assert submitted.status_code == 202
    assert AsyncJob.objects.count() == 1


def test_failed_api_authentication_is_not_counted_as_a_login_failure(key):
    api = Client()
    for _ in range(LIMIT + 1):
        response = api.post(
            SUBMIT_URL, VALID_BODY, content_type="application/json", headers=bearer("sk-bf-wrong")
        )
        assert response.status_code == 401
    assert not AccessAttempt.objects.exists()


# --- The client address -------------------------------------------------------------------------


def test_without_a_proxy_the_forwarded_header_is_ignored(root):
    client = Client()
    for n in range(LIMIT):
        log_in(client, "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
    assert log_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.99").status_code == 429


def test_behind_a_proxy_each_forwarded_client_is_counted_apart(root, settings):
    settings.AXES_CLIENT_IP_CALLABLE = "gateway.admin_login.forwarded_client_ip"
    fail(Client(), LIMIT, HTTP_X_FORWARDED_FOR="198.51.100.1")
    client = Client()
    assert log_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 302


def test_behind_a_proxy_a_client_cannot_escape_by_writing_the_header_itself(root, settings):
    settings.AXES_CLIENT_IP_CALLABLE = "gateway.admin_login.forwarded_client_ip"
    client = Client()
    for n in range(LIMIT):
        log_in(client, "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}, 198.51.100.1")
    response = log_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.9, 198.51.100.1")
    assert response.status_code == 429


def test_forwarded_client_ip_takes_the_address_the_proxy_appended():
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.1 ")
    assert forwarded_client_ip(request) == "198.51.100.1"


def test_forwarded_client_ip_falls_back_to_the_peer_without_the_header():
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.5")
    assert forwarded_client_ip(request) == peer_client_ip(request) == "192.0.2.5"


# --- Settings ------------------------------------------------------------------------------------


def test_limit_and_cool_off_come_from_the_environment():
    values = _setting(
        "[s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME, s.AXES_CLIENT_IP_CALLABLE]",
        {
            "GATEWAY_ADMIN_LOGIN_FAILURE_LIMIT": "3",
            "GATEWAY_ADMIN_LOGIN_COOLOFF_MINUTES": "30",
            "GATEWAY_BEHIND_PROXY": "true",
        },
    )
    assert values == [3, 0.5, "gateway.admin_login.forwarded_client_ip"]


def test_default_limit_is_five_failures_and_a_fifteen_minute_cool_off():
    values = _setting(
        "[s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME * 60, s.AXES_CLIENT_IP_CALLABLE]",
        {},
        drop=(
            "GATEWAY_ADMIN_LOGIN_FAILURE_LIMIT",
            "GATEWAY_ADMIN_LOGIN_COOLOFF_MINUTES",
            "GATEWAY_BEHIND_PROXY",
        ),
    )
    assert values == [5, 15.0, "gateway.admin_login.peer_client_ip"]


def test_a_limit_below_one_stops_start_up():
    with pytest.raises(subprocess.CalledProcessError) as failure:
        _setting("s.AXES_FAILURE_LIMIT", {"GATEWAY_ADMIN_LOGIN_FAILURE_LIMIT": "0"})
    assert "GATEWAY_ADMIN_LOGIN_FAILURE_LIMIT must be at least 1" in failure.value.stderr
