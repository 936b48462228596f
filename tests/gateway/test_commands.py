from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import jwt
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from gateway.access.keys import hash_key
from gateway.access.models import VirtualKey
from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY
from jobs.models import AsyncJob, JobStatus
from tests.factories import AsyncJobFactory, VirtualKeyFactory
from tests.helpers import assert_error_shape, bearer, poll_url, unknown_job_url

pytestmark = pytest.mark.django_db


def run(command: str, *args: str) -> tuple[str, str]:
    """Run a management command; its last stdout line and its whole stderr."""
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    lines = out.getvalue().strip().splitlines()
    return lines[-1], err.getvalue()


def completed_job(**kwargs: Any) -> AsyncJob:
    now = timezone.now()
    return AsyncJobFactory(
        status=JobStatus.COMPLETED,
        status_code=200,
        result={"object": "text_completion", "choices": []},
        completed_at=now,
        expires_at=now + timedelta(hours=1),
        **kwargs,
    )


# --- create_virtual_key -------------------------------------------------------------------------


def test_create_virtual_key_prints_the_key_on_the_last_line():
    raw, _ = run("create_virtual_key", "--name", "x")
    assert raw.startswith("sk-bf-")
    assert VirtualKey.objects.get(name="x").prefix == raw[:10]


def test_created_key_authenticates(api_client):
    raw, _ = run("create_virtual_key", "--name", "x")
    assert_error_shape(api_client.get(unknown_job_url(), headers=bearer(raw)), 404)


def test_created_key_stores_only_its_hash():
    raw, err = run("create_virtual_key", "--name", "x")
    row = VirtualKey.objects.filter(name="x").values().get()
    assert row["key_hash"] == hash_key(raw)
    assert all(raw not in str(value) for value in row.values())
    assert raw not in err


def test_created_key_without_options_allows_any_model_and_never_expires():
    run("create_virtual_key", "--name", "x")
    key = VirtualKey.objects.get(name="x")
    assert (key.allowed_models, key.expires_at, key.is_active) == ([], None, True)


def test_allow_model_patterns_are_stored():
    args = ["--allow-model", "openai/*", "--allow-model", "anthropic/claude-3-5-haiku"]
    run("create_virtual_key", "--name", "x", *args)
    key = VirtualKey.objects.get(name="x")
    assert key.allowed_models == ["openai/*", "anthropic/claude-3-5-haiku"]
    assert key.allows("openai/gpt-4o") and not key.allows("anthropic/claude-3-5-sonnet")


def test_allow_model_without_provider_is_refused():
    with pytest.raises(CommandError, match="provider/model"):
        run("create_virtual_key", "--name", "x", "--allow-model", "gpt-4o")
    assert not VirtualKey.objects.exists()


def test_created_key_without_limit_flags_has_no_limits():
    run("create_virtual_key", "--name", "x")
    key = VirtualKey.objects.get(name="x")
    assert (key.requests_per_minute, key.tokens_per_minute, key.max_pending) == (None, None, None)
    assert not key.has_limits


def test_limit_flags_are_stored_and_the_key_stays_on_the_last_line():
    flags = ["--requests-per-minute", "60", "--tokens-per-minute", "90000", "--max-pending", "5"]
    raw, _ = run("create_virtual_key", "--name", "x", *flags)
    key = VirtualKey.objects.get(name="x")
    assert key.key_hash == hash_key(raw)
    assert (key.requests_per_minute, key.tokens_per_minute, key.max_pending) == (60, 90000, 5)
    assert key.has_limits


@pytest.mark.parametrize("flag", ["--requests-per-minute", "--tokens-per-minute", "--max-pending"])
@pytest.mark.parametrize("value", ["0", "-3", "1.5", "many", "2147483648"])
def test_a_limit_flag_that_is_not_a_positive_integer_is_refused(flag, value):
    with pytest.raises(CommandError, match=f"{flag}: must be"):
        run("create_virtual_key", "--name", "x", flag, value)
    assert not VirtualKey.objects.exists()


def test_a_key_created_without_share_has_share_1():
    run("create_virtual_key", "--name", "x")
    assert VirtualKey.objects.get(name="x").share == 1


@pytest.mark.parametrize("share", ["1", "3", "1000"])
def test_share_flag_is_stored_and_the_key_stays_on_the_last_line(share):
    raw, _ = run("create_virtual_key", "--name", "x", "--share", share, "--max-pending", "5")
    key = VirtualKey.objects.get(name="x")
    assert key.key_hash == hash_key(raw)
    assert (key.share, key.max_pending) == (int(share), 5)


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "three", "", "1001", "2147483648"])
def test_a_share_outside_1_to_1000_is_refused_with_the_range(value):
    with pytest.raises(CommandError, match=r"--share: must be an integer from 1 to 1000, got"):
        run("create_virtual_key", "--name", "x", "--share", value)
    assert not VirtualKey.objects.exists()


def test_expires_in_days_is_stored():
    before = timezone.now()
    run("create_virtual_key", "--name", "x", "--expires-in-days", "7")
    expires_at = VirtualKey.objects.get(name="x").expires_at
    assert expires_at is not None
    assert before + timedelta(days=7) <= expires_at <= timezone.now() + timedelta(days=7)


def test_expires_in_days_below_one_is_refused():
    with pytest.raises(CommandError, match="at least 1"):
        run("create_virtual_key", "--name", "x", "--expires-in-days", "0")
    assert not VirtualKey.objects.exists()


def test_naive_expires_at_is_taken_as_utc():
    run("create_virtual_key", "--name", "x", "--expires-at", "2099-01-02T03:04:05")
    expires_at = VirtualKey.objects.get(name="x").expires_at
    assert expires_at == datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_malformed_expires_at_is_refused():
    with pytest.raises(CommandError, match="ISO 8601"):
        run("create_virtual_key", "--name", "x", "--expires-at", "next tuesday")


def test_duplicate_name_is_refused():
    run("create_virtual_key", "--name", "x")
    with pytest.raises(CommandError, match="already exists"):
        run("create_virtual_key", "--name", "x")
    assert VirtualKey.objects.filter(name="x").count() == 1


def test_blank_name_is_refused():
    with pytest.raises(CommandError, match="empty"):
        run("create_virtual_key", "--name", "   ")


def test_a_name_longer_than_the_column_is_refused_with_its_limit_not_a_traceback():
    longest = VirtualKey._meta.get_field("name").max_length
    with pytest.raises(CommandError, match=f"at most {longest} characters"):
        run("create_virtual_key", "--name", "k" * (longest + 1))
    run("create_virtual_key", "--name", "k" * longest)
    assert VirtualKey.objects.filter(name="k" * longest).exists()


# --- issue_jwt ----------------------------------------------------------------------------------


def test_issue_jwt_for_a_key_authenticates_as_that_key(api_client, key):
    own, foreign = completed_job(virtual_key=key), completed_job()
    token, _ = run("issue_jwt", "--key", key.name)
    assert api_client.get(poll_url(own.id), headers=bearer(token)).status_code == 200
    assert_error_shape(api_client.get(poll_url(foreign.id), headers=bearer(token)), 404)


def test_issue_jwt_for_a_key_carries_its_id_and_role(key):
    token, _ = run("issue_jwt", "--key", key.name)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["role"], claims["key_id"]) == (ROLE_VIRTUAL_KEY, key.pk)


def test_issue_jwt_admin_reads_any_keys_job(api_client):
    job = completed_job()
    token, _ = run("issue_jwt", "--admin")
    assert jwt.decode(token, options={"verify_signature": False})["role"] == ROLE_ADMIN
    response = api_client.get(poll_url(job.id), headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["id"] == str(job.id)


def test_issue_jwt_lifetime_sets_exp():
    token, _ = run("issue_jwt", "--admin", "--lifetime", "120")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


def test_issue_jwt_lifetime_below_one_is_refused():
    with pytest.raises(CommandError, match="at least 1"):
        run("issue_jwt", "--admin", "--lifetime", "0")


def test_issue_jwt_for_an_unknown_key_is_refused():
    with pytest.raises(CommandError, match="no virtual key named"):
        run("issue_jwt", "--key", "nobody")


def test_issue_jwt_for_an_inactive_key_is_refused():
    key = VirtualKeyFactory(is_active=False)
    with pytest.raises(CommandError, match="inactive or expired"):
        run("issue_jwt", "--key", key.name)


def test_issue_jwt_without_a_signing_key_is_a_command_error(settings):
    settings.GATEWAY_JWT_SECRET = ""
    with pytest.raises(CommandError, match="GATEWAY_JWT_SECRET"):
        run("issue_jwt", "--admin")


def test_issue_jwt_requires_key_or_admin():
    with pytest.raises(CommandError):
        run("issue_jwt")
