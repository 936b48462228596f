"""A JWT may not live longer than its role's bound, counted from iat and from now."""

from __future__ import annotations

import sys
import time
from typing import Any

import jwt
import pytest
from django.core.management import CommandError

from gateway.access import tokens
from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY, LifetimeTooLong, issue_token
from tests.gateway.test_commands import run
from tests.gateway.test_jwt import claims, hs256
from tests.helpers import assert_unauthorized, bearer, unknown_job_url

pytestmark = pytest.mark.django_db

VK_BOUND = 86400
ADMIN_BOUND = 3600
NOW = int(time.time())  # set again as each test starts: PyJWT checks exp against the real clock


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's idea of now stands still, so "one second past the bound" is exact."""
    now = int(time.time())
    monkeypatch.setattr(sys.modules[__name__], "NOW", now)
    monkeypatch.setattr(tokens, "clock", lambda: float(now))


@pytest.fixture(params=[ROLE_VIRTUAL_KEY, ROLE_ADMIN])
def role(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def bound_of(role: str) -> int:
    return ADMIN_BOUND if role == ROLE_ADMIN else VK_BOUND


def token(role: str, key: Any, **times: int | None) -> str:
    extra = {"key_id": key.pk, "sub": f"vk:{key.pk}"} if role == ROLE_VIRTUAL_KEY else {}
    return hs256(claims(role=role, **extra, **times))


def accepted(api_client: Any, bearer_token: str) -> bool:
    """Authenticated: an unknown job is 404 for any accepted caller."""
    response = api_client.get(unknown_job_url(), headers=bearer(bearer_token))
    if response.status_code == 404:
        return True
    body = assert_unauthorized(response, code="invalid_token")
    assert "lifetime" in body["error"]["message"]
    return False


def test_the_bounds_default_to_a_day_and_an_hour(settings):
    assert (settings.GATEWAY_JWT_MAX_LIFETIME, settings.GATEWAY_JWT_ADMIN_MAX_LIFETIME) == (
        VK_BOUND,
        ADMIN_BOUND,
    )


def test_a_token_living_exactly_its_bound_is_accepted(api_client, key, role):
    assert accepted(api_client, token(role, key, iat=NOW, exp=NOW + bound_of(role)))


def test_a_token_living_one_second_past_its_bound_is_401(api_client, key, role):
    assert not accepted(api_client, token(role, key, iat=NOW, exp=NOW + bound_of(role) + 1))


def test_the_bound_is_counted_from_iat_even_when_exp_is_near(api_client, key, role):
    issued = NOW - 100
    assert accepted(api_client, token(role, key, iat=issued, exp=issued + bound_of(role)))
    assert not accepted(api_client, token(role, key, iat=issued, exp=issued + bound_of(role) + 1))


def test_without_iat_exp_may_lie_at_most_the_bound_from_now(api_client, key, role):
    assert accepted(api_client, token(role, key, iat=None, exp=NOW + bound_of(role)))
    assert not accepted(api_client, token(role, key, iat=None, exp=NOW + bound_of(role) + 1))


def test_an_admin_token_may_not_live_as_long_as_a_virtual_key_token(api_client, key):
    assert accepted(api_client, token(ROLE_VIRTUAL_KEY, key, iat=NOW, exp=NOW + ADMIN_BOUND + 1))
    assert not accepted(api_client, token(ROLE_ADMIN, key, iat=NOW, exp=NOW + ADMIN_BOUND + 1))


def test_the_bounds_follow_their_settings(api_client, key, settings):
    settings.GATEWAY_JWT_MAX_LIFETIME = 600
    settings.GATEWAY_JWT_ADMIN_MAX_LIFETIME = 60
    assert accepted(api_client, token(ROLE_VIRTUAL_KEY, key, iat=NOW, exp=NOW + 600))
    assert not accepted(api_client, token(ROLE_VIRTUAL_KEY, key, iat=NOW, exp=NOW + 601))
    assert accepted(api_client, token(ROLE_ADMIN, key, iat=NOW, exp=NOW + 60))
    assert not accepted(api_client, token(ROLE_ADMIN, key, iat=NOW, exp=NOW + 61))


# --- issuing ------------------------------------------------------------------------------------


def lifetime_of(issued: str) -> int:
    decoded = jwt.decode(issued, options={"verify_signature": False})
    return int(decoded["exp"] - decoded["iat"])


def test_issued_tokens_keep_the_default_lifetime(api_client, key, role):
    issued = issue_token(role=role, key_id=key.pk if role == ROLE_VIRTUAL_KEY else None)
    assert lifetime_of(issued) == 3600
    assert accepted(api_client, issued)


def test_the_default_lifetime_never_outlives_the_admin_bound(api_client, settings):
    settings.GATEWAY_JWT_DEFAULT_LIFETIME = 7200
    issued = issue_token(role=ROLE_ADMIN)
    assert lifetime_of(issued) == ADMIN_BOUND
    assert accepted(api_client, issued)


def test_issue_token_refuses_a_lifetime_past_the_bound(role):
    with pytest.raises(LifetimeTooLong):
        issue_token(role=role, key_id=1, lifetime=bound_of(role) + 1)


def test_issue_jwt_issues_a_token_living_exactly_the_bound(api_client, key, role):
    who = ["--admin"] if role == ROLE_ADMIN else ["--key", key.name]
    issued, _ = run("issue_jwt", *who, "--lifetime", str(bound_of(role)))
    assert lifetime_of(issued) == bound_of(role)
    assert accepted(api_client, issued)


@pytest.mark.parametrize(
    ("who", "setting", "too_long"),
    [
        (["--admin"], "GATEWAY_JWT_ADMIN_MAX_LIFETIME", ADMIN_BOUND + 1),
        (["--key", "KEY"], "GATEWAY_JWT_MAX_LIFETIME", VK_BOUND + 1),
    ],
)
def test_issue_jwt_refuses_a_lifetime_past_the_bound(key, who, setting, too_long):
    who = [key.name if arg == "KEY" else arg for arg in who]
    with pytest.raises(CommandError, match=f"--lifetime is too long.*{setting}"):
        run("issue_jwt", *who, "--lifetime", str(too_long))
