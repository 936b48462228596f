from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils import timezone

from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY, issue_token
from jobs.models import AsyncJob, JobStatus
from tests.conftest import JWT_SECRET
from tests.factories import AsyncJobFactory, VirtualKeyFactory
from tests.helpers import (
    SUBMIT_URL,
    VALID_BODY,
    assert_error_shape,
    assert_unauthorized,
    b64url,
    b64url_decode_json,
    b64url_json,
    bearer,
    poll_url,
)

pytestmark = pytest.mark.django_db

RESULT = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1,
    "model": "gpt-test",
    "choices": [{"text": "hi", "index": 0, "logprobs": None, "finish_reason": "stop"}],
}


def completed_job(**kwargs: Any) -> AsyncJob:
    now = timezone.now()
    return AsyncJobFactory(
        status=JobStatus.COMPLETED,
        status_code=200,
        result=RESULT,
        completed_at=now,
        expires_at=now + timedelta(hours=1),
        **kwargs,
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"role": ROLE_ADMIN, "iat": now, "exp": now + 600, "sub": "admin"}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def hs256(payload: dict[str, Any], secret: str = JWT_SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def hand_signed(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A JWT built by hand, so tests can make tokens PyJWT refuses to make."""
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    signature = b""
    if secret is not None:
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def poll(client: Any, job: AsyncJob, token: str) -> Any:
    return client.get(poll_url(job.id), headers=bearer(token))


@pytest.fixture
def other_job() -> AsyncJob:
    """A job of some other key, that a virtual-key JWT must not see."""
    return completed_job()


# --- Virtual-key and admin tokens -----------------------------------------------------------------


def test_virtual_key_jwt_reads_its_own_job(api_client, key):
    job = completed_job(virtual_key=key)
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    response = poll(api_client, job, token)
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(job.id)
    assert response.json()["result"] == RESULT


def test_virtual_key_jwt_gets_404_for_another_keys_job(api_client, key, other_job):
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    response = poll(api_client, other_job, token)
    assert_error_shape(response, 404, code="job_not_found")


def test_virtual_key_jwt_submits_as_its_key(api_client, key, dispatched):
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    response = api_client.post(SUBMIT_URL, VALID_BODY, format="json", headers=bearer(token))
    assert response.status_code == 202, response.content
    assert AsyncJob.objects.get().virtual_key == key


def test_virtual_key_jwt_keeps_its_keys_model_restrictions(api_client, dispatched):
    key = VirtualKeyFactory(allowed_models=["anthropic/*"])
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    response = api_client.post(SUBMIT_URL, VALID_BODY, format="json", headers=bearer(token))
    assert_error_shape(response, 403, code="model_not_allowed", param="model")
    assert AsyncJob.objects.count() == 0


def test_admin_jwt_reads_any_keys_job(api_client, other_job):
    response = poll(api_client, other_job, hs256(claims()))
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(other_job.id)


def test_admin_jwt_from_issue_token_reads_any_keys_job(api_client, other_job):
    token = issue_token(role=ROLE_ADMIN)
    assert poll(api_client, other_job, token).status_code == 200


def test_jwt_for_a_deactivated_key_is_401(api_client, key):
    job = completed_job(virtual_key=key)
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    key.is_active = False
    key.save()
    assert_unauthorized(poll(api_client, job, token))


def test_jwt_for_an_expired_key_is_401(api_client, key):
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    key.expires_at = timezone.now() - timedelta(seconds=1)
    key.save()
    assert_unauthorized(poll(api_client, completed_job(), token))


def test_jwt_for_a_deleted_key_is_401(api_client, key):
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    key.delete()
    assert_unauthorized(poll(api_client, completed_job(), token))


@pytest.mark.parametrize(
    "bad_claims",
    [
        pytest.param({"role": "root"}, id="unknown-role"),
        pytest.param({"role": None}, id="no-role"),
        pytest.param({"role": ROLE_VIRTUAL_KEY}, id="virtual-key-without-key-id"),
        pytest.param({"role": ROLE_VIRTUAL_KEY, "key_id": "1"}, id="key-id-as-string"),
        pytest.param({"role": ROLE_VIRTUAL_KEY, "key_id": True}, id="key-id-as-boolean"),
    ],
)
def test_jwt_without_a_valid_role_is_401(api_client, other_job, bad_claims):
    response = poll(api_client, other_job, hs256(claims(**bad_claims)))
    assert_unauthorized(response, code="invalid_token")


# --- Tokens that must be refused ----------------------------------------------------------------


def test_expired_jwt_is_401_with_www_authenticate(api_client, other_job):
    token = hs256(claims(iat=int(time.time()) - 120, exp=int(time.time()) - 60))
    body = assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")
    assert "expired" in body["error"]["message"]


def test_jwt_without_exp_is_401(api_client, other_job):
    token = hs256(claims(exp=None))
    body = assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")
    assert "exp" in body["error"]["message"]


def test_alg_none_jwt_is_401(api_client, other_job):
    token = hand_signed({"alg": "none", "typ": "JWT"}, claims(), secret=None)
    assert token.endswith(".")
    assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")


def test_jwt_signed_with_another_secret_is_401(api_client, other_job):
    token = hs256(claims(), secret="another-secret-that-is-long-enough-for-hs256")
    assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("aaaa.bbbb", id="two-segments"),
        pytest.param("a.b.c", id="three-garbage-segments"),
        pytest.param("....", id="only-dots"),
        pytest.param(b64url_json({"alg": "HS256"}) + ".%%%.sig", id="bad-base64"),
        # Not ASCII, so not a JWT; a lone surrogate once made PyJWT fail with a 500.
        pytest.param("\ud800.e30.sig", id="lone-surrogate"),
        pytest.param("eyJhbGciOiJIUzI1NiJ9.e30.sig\udcff", id="trailing-surrogate"),
        pytest.param("ey\u00e9.e30.sig", id="latin-1"),
        pytest.param("ey\u4e2d.e30.sig", id="cjk"),
    ],
)
def test_malformed_jwt_is_401(api_client, other_job, token):
    assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")


def test_tampered_payload_is_401(api_client, key, other_job):
    header, payload, signature = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk).split(".")
    forged_claims = b64url_decode_json(payload) | {"role": ROLE_ADMIN}
    forged = f"{header}.{b64url_json(forged_claims)}.{signature}"
    assert_unauthorized(poll(api_client, other_job, forged), code="invalid_token")


def test_jwt_not_valid_yet_is_401(api_client, other_job):
    token = hs256(claims(nbf=int(time.time()) + 600))
    body = assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")
    assert "not valid yet" in body["error"]["message"]


def test_jwt_is_refused_when_jwt_auth_is_not_configured(settings, api_client, other_job):
    token = issue_token(role=ROLE_ADMIN)
    settings.GATEWAY_JWT_SECRET = ""
    body = assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")
    assert "not configured" in body["error"]["message"]


def test_jwt_with_empty_secret_signature_is_refused_when_not_configured(
    settings, api_client, other_job
):
    settings.GATEWAY_JWT_SECRET = ""
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), secret=b"")
    assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")


def test_refused_jwt_is_never_echoed_in_the_response(api_client, other_job):
    token = hs256(claims(exp=int(time.time()) - 60))
    response = poll(api_client, other_job, token)
    assert response.status_code == 401
    assert token not in response.content.decode()
    assert token.split(".")[2] not in response.content.decode()


# --- Audience and issuer ------------------------------------------------------------------------


@pytest.fixture
def audience(settings: Any) -> str:
    settings.GATEWAY_JWT_AUDIENCE = "ai-gateway"
    return "ai-gateway"


@pytest.fixture
def issuer(settings: Any) -> str:
    settings.GATEWAY_JWT_ISSUER = "https://auth.example.test"
    return "https://auth.example.test"


def test_jwt_with_the_configured_audience_is_accepted(api_client, other_job, audience):
    response = poll(api_client, other_job, hs256(claims(aud=audience)))
    assert response.status_code == 200, response.content


def test_issued_jwt_carries_the_configured_audience_and_issuer(
    api_client, other_job, audience, issuer
):
    token = issue_token(role=ROLE_ADMIN)
    decoded = jwt.decode(token, options={"verify_signature": False})
    assert (decoded["aud"], decoded["iss"]) == (audience, issuer)
    assert poll(api_client, other_job, token).status_code == 200


def test_jwt_with_a_wrong_audience_is_401(api_client, other_job, audience):
    token = hs256(claims(aud="another-service"))
    body = assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")
    assert "audience" in body["error"]["message"]


def test_jwt_without_audience_is_401_when_one_is_configured(api_client, other_job, audience):
    assert_unauthorized(
        poll(api_client, other_job, hs256(claims())),
        code="invalid_token",
    )


def test_jwt_with_the_configured_issuer_is_accepted(api_client, other_job, issuer):
    response = poll(api_client, other_job, hs256(claims(iss=issuer)))
    assert response.status_code == 200, response.content


def test_jwt_with_a_wrong_issuer_is_401(api_client, other_job, issuer):
    token = hs256(claims(iss="https://evil.example.test"))
    body = assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")
    assert "issuer" in body["error"]["message"]


def test_jwt_without_issuer_is_401_when_one_is_configured(api_client, other_job, issuer):
    assert_unauthorized(
        poll(api_client, other_job, hs256(claims())),
        code="invalid_token",
    )


# --- RS256 --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_pems() -> tuple[str, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@pytest.fixture
def rs256(settings: Any, rsa_pems: tuple[str, str]) -> tuple[str, str]:
    private_pem, public_pem = rsa_pems
    settings.GATEWAY_JWT_ALGORITHM = "RS256"
    settings.GATEWAY_JWT_PRIVATE_KEY = private_pem
    settings.GATEWAY_JWT_PUBLIC_KEY = public_pem
    return private_pem, public_pem


def test_rs256_virtual_key_jwt_reads_its_own_job(api_client, key, rs256):
    job = completed_job(virtual_key=key)
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    response = poll(api_client, job, token)
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(job.id)


def test_rs256_admin_jwt_reads_any_keys_job(api_client, other_job, rs256):
    token = issue_token(role=ROLE_ADMIN)
    assert poll(api_client, other_job, token).status_code == 200


def test_rs256_refuses_hs256_token_signed_with_the_public_key(api_client, other_job, rs256):
    _, public_pem = rs256
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), secret=public_pem.encode())
    assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")


def test_rs256_refuses_hs256_token_signed_with_the_old_shared_secret(api_client, other_job, rs256):
    assert_unauthorized(
        poll(api_client, other_job, hs256(claims())),
        code="invalid_token",
    )


def test_rs256_refuses_token_signed_by_another_key_pair(api_client, other_job, rs256):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), stranger, algorithm="RS256")
    assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")


def test_hs256_gateway_refuses_rs256_token(api_client, other_job, rsa_pems):
    private_pem, _ = rsa_pems
    token = jwt.encode(claims(), private_pem, algorithm="RS256")
    assert_unauthorized(poll(api_client, other_job, token), code="invalid_token")
