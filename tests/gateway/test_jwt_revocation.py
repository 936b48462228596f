"""JWTs revoked before they expire: one by its jti, or every token issued before a moment."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import jwt
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from gateway.access import revocation, tokens
from gateway.access.models import RevokedToken
from gateway.access.revocation import (
    RevocationCache,
    Revocations,
    purge_expired_revocations,
    revoke_all_before,
    revoke_jti,
)
from gateway.access.tasks import purge_expired_revocations as purge_task
from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY, issue_token
from gateway.celery import app
from tests.gateway.test_jwt import claims, hs256
from tests.helpers import FakeClock, assert_unauthorized, bearer, unknown_job_url

pytestmark = pytest.mark.django_db

TTL = 5.0


@pytest.fixture(autouse=True)
def clock(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """The process's revocation cache, fresh and on a clock the test moves."""
    settings.GATEWAY_KEY_CACHE_SECONDS = TTL
    fake = FakeClock()
    monkeypatch.setattr(revocation, "revocation_cache", RevocationCache(clock=fake))
    yield fake


def jti_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def status(api_client: Any, token: str) -> int:
    """404 (an unknown job) once the token is accepted; 401 is checked for its shape."""
    response = api_client.get(unknown_job_url(), headers=bearer(token))
    if response.status_code == 401:
        body = assert_unauthorized(response, code="invalid_token")
        assert body["error"]["message"] == "Invalid token: token has been revoked."
    return int(response.status_code)


def revoke(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("revoke_jwt", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def revoked_elsewhere(**fields: Any) -> None:
    """What the revoke_jwt command does in its own process: a row this process is not told of."""
    defaults = {"expires_at": timezone.now() + timedelta(hours=1)}
    RevokedToken.objects.bulk_create([RevokedToken(**(defaults | fields))])


# --- by jti -------------------------------------------------------------------------------------


def test_issued_tokens_carry_a_jti_of_their_own(key):
    first, second = (issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk) for _ in range(2))
    assert jti_of(first) and jti_of(first) != jti_of(second)


@pytest.mark.parametrize("role", [ROLE_VIRTUAL_KEY, ROLE_ADMIN])
def test_a_token_revoked_by_jti_is_401_and_others_still_work(api_client, key, role):
    revoked, other = (issue_token(role=role, key_id=key.pk) for _ in range(2))
    assert status(api_client, revoked) == 404

    assert revoke_jti(jti_of(revoked), reason="leaked") is True

    assert status(api_client, revoked) == 401
    assert status(api_client, other) == 404


def test_revoke_jwt_by_token_prints_the_jti_never_the_token(api_client, key, caplog):
    caplog.set_level(logging.DEBUG)
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)

    out, err = revoke("--token", token, "--reason", "laptop stolen")

    assert out.startswith(f"revoked virtual_key token {jti_of(token)} (expires ")
    row = RevokedToken.objects.get(jti=jti_of(token))
    assert row.reason == "laptop stolen"
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert row.expires_at == datetime.fromtimestamp(exp, UTC)
    assert status(api_client, token) == 401
    _header, payload, signature = token.split(".")
    for text in (out, err, caplog.text):
        assert token not in text and signature not in text and payload not in text


def test_revoke_jwt_by_jti(api_client, key):
    token = issue_token(role=ROLE_ADMIN)

    out, _ = revoke("--jti", jti_of(token))

    assert out.strip() == f"revoked token {jti_of(token)}"
    assert status(api_client, token) == 401
    row = RevokedToken.objects.get(jti=jti_of(token))
    # Its exp is unknown, so the row outlives any token that may carry the jti.
    assert row.expires_at >= timezone.now() + timedelta(seconds=86400 - 60)


def test_revoking_twice_says_so(key):
    token = issue_token(role=ROLE_ADMIN)
    revoke("--token", token)
    out, _ = revoke("--jti", jti_of(token))
    assert out.strip() == f"token {jti_of(token)} was already revoked"
    assert RevokedToken.objects.count() == 1


def test_revoke_jwt_refuses_a_token_without_a_jti_and_points_at_all_before():
    token = hs256(claims())
    with pytest.raises(CommandError, match=r"no jti.*--all-before") as raised:
        revoke("--token", token)
    assert token not in str(raised.value)
    assert not RevokedToken.objects.exists()


def test_revoke_jwt_refuses_a_token_it_did_not_sign():
    forged = hs256(claims(jti="x1"), secret="another-secret-that-is-long-enough-for-hs256")
    with pytest.raises(CommandError, match="signature is invalid") as raised:
        revoke("--token", forged)
    assert forged not in str(raised.value)
    assert not RevokedToken.objects.exists()


def test_revoke_jwt_leaves_an_expired_token_alone():
    token = hs256(claims(jti="old-one", iat=int(time.time()) - 120, exp=int(time.time()) - 60))
    out, _ = revoke("--token", token)
    assert out.strip() == "token old-one has already expired; nothing to revoke"
    assert not RevokedToken.objects.exists()


@pytest.mark.parametrize("jti", ["*", "x" * 256])
def test_revoke_jwt_refuses_a_reserved_or_overlong_jti(jti):
    with pytest.raises(CommandError, match="--jti must be"):
        revoke("--jti", jti)


def test_a_token_with_an_overlong_jti_is_401(api_client):
    response = api_client.get(unknown_job_url(), headers=bearer(hs256(claims(jti="x" * 256))))
    assert_unauthorized(response, code="invalid_token")


# --- every token issued before a moment ---------------------------------------------------------


def test_all_before_revokes_older_tokens_with_or_without_jti_and_spares_newer(
    api_client, key, monkeypatch
):
    now = int(time.time())
    monkeypatch.setattr(tokens, "clock", lambda: float(now - 30))
    older_issued = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    monkeypatch.setattr(tokens, "clock", time.time)
    older = hs256(claims(iat=now - 1, exp=now + 600))
    without_iat = hs256(claims(iat=None, exp=now + 600))
    newer = hs256(claims(iat=now, exp=now + 600, jti="fresh"))
    moment = datetime.fromtimestamp(now, UTC)

    out, _ = revoke("--all-before", moment.isoformat())

    assert out.strip() == f"revoked every token issued before {moment:%Y-%m-%dT%H:%M:%SZ}"
    assert status(api_client, older_issued) == 401
    assert status(api_client, older) == 401
    assert status(api_client, without_iat) == 401
    assert status(api_client, newer) == 404


def test_all_before_is_stored_and_survives_a_restart(api_client):
    old = hs256(claims(iat=int(time.time()) - 60))
    revoke("--all-before", (timezone.now() - timedelta(seconds=10)).isoformat())

    revocation.revocation_cache.clear()  # what a fresh process starts with

    assert status(api_client, old) == 401
    row = RevokedToken.objects.get(jti=RevokedToken.ALL_BEFORE)
    assert row.expires_at == row.issued_before + timedelta(seconds=86400)


def test_an_earlier_all_before_never_undoes_a_later_one(api_client):
    later = timezone.now() - timedelta(seconds=5)
    revoke_all_before(later)

    out, _ = revoke("--all-before", (later - timedelta(hours=1)).isoformat())

    assert "already revoked" in out
    assert RevokedToken.objects.get(jti=RevokedToken.ALL_BEFORE).issued_before == later


@pytest.mark.parametrize("value", ["yesterday", "2026-13-40T00:00:00", "2026-01-01T25:00", ""])
def test_all_before_refuses_what_is_not_an_iso_8601_moment(value):
    with pytest.raises(CommandError, match="ISO 8601"):
        revoke("--all-before", value)
    assert not RevokedToken.objects.exists()


def test_all_before_refuses_a_moment_in_the_future():
    future = (timezone.now() + timedelta(minutes=5)).isoformat()
    with pytest.raises(CommandError, match="must not be in the future"):
        revoke("--all-before", future)


def test_revoke_jwt_needs_exactly_one_of_its_options():
    with pytest.raises(CommandError):
        revoke()
    with pytest.raises(CommandError):
        revoke("--jti", "a", "--all-before", "2020-01-01T00:00:00Z")


# --- the cache and the cost of the check --------------------------------------------------------


def test_a_revocation_made_elsewhere_applies_once_the_cache_time_has_passed(api_client, key, clock):
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    assert status(api_client, token) == 404
    revoked_elsewhere(jti=jti_of(token))
    clock.now += TTL - 0.1
    assert status(api_client, token) == 404
    clock.now += 0.2
    assert status(api_client, token) == 401


def test_an_all_before_made_elsewhere_applies_once_the_cache_time_has_passed(api_client, clock):
    token = hs256(claims(iat=int(time.time()) - 60))
    assert status(api_client, token) == 404
    revoked_elsewhere(
        jti=RevokedToken.ALL_BEFORE, issued_before=timezone.now() - timedelta(seconds=1)
    )
    assert status(api_client, token) == 404
    clock.now += TTL + 0.1
    assert status(api_client, token) == 401


def test_a_jwt_request_costs_one_indexed_query_more_at_most(
    api_client, key, django_assert_num_queries
):
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    assert status(api_client, key.raw) == 404  # the key is cached now
    with django_assert_num_queries(1):
        assert status(api_client, key.raw) == 404
    with django_assert_num_queries(2) as captured:
        assert status(api_client, token) == 404
    [revocation_query] = [q["sql"] for q in captured.captured_queries if "revokedtoken" in q["sql"]]
    assert '"jti" IN' in revocation_query
    with django_assert_num_queries(1):
        assert status(api_client, token) == 404


def test_zero_cache_seconds_reads_the_table_on_every_request(api_client, key, settings):
    settings.GATEWAY_KEY_CACHE_SECONDS = 0
    token = issue_token(role=ROLE_ADMIN)
    assert status(api_client, token) == 404
    revoked_elsewhere(jti=jti_of(token))
    assert status(api_client, token) == 401


def test_the_cache_holds_at_most_its_size_dropping_the_least_recently_used(clock):
    cache = RevocationCache(clock=clock, max_entries=2)
    answers = {jti: Revocations(jti_revoked=jti == "b", issued_before=None) for jti in "abc"}
    for jti in "abc":
        assert cache.get(jti, lambda jti=jti: answers[jti]) == answers[jti]
    assert len(cache._entries) == 2
    assert cache.get("c", lambda: pytest.fail("c is cached")) == answers["c"]
    loads: list[str] = []
    cache.get("a", lambda: loads.append("a") or answers["a"])
    assert loads == ["a"]  # dropped when c came in


# --- clean-up, admin ----------------------------------------------------------------------------


def test_expired_revocations_are_purged_and_live_ones_kept():
    revoked_elsewhere(jti="gone", expires_at=timezone.now() - timedelta(seconds=1))
    revoked_elsewhere(jti="kept")

    assert purge_expired_revocations() == 1

    assert list(RevokedToken.objects.values_list("jti", flat=True)) == ["kept"]


def test_beat_purges_expired_revocations_every_hour():
    revoked_elsewhere(jti="gone", expires_at=timezone.now() - timedelta(seconds=1))
    entry = app.conf.beat_schedule["purge-expired-revocations"]
    assert entry["task"] == purge_task.name == "gateway.purge_expired_revocations"
    assert entry["schedule"] == 3600.0
    assert purge_task() == 1


def test_the_admin_lists_revocations_read_only(admin_client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    revoked_elsewhere(jti="abc123", reason="leaked")
    listing = admin_client.get("/admin/gateway/revokedtoken/")
    assert listing.status_code == 200
    assert b"abc123" in listing.content and b"leaked" in listing.content
    assert admin_client.get("/admin/gateway/revokedtoken/add/").status_code == 403
