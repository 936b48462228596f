"""Forged and broken JWTs are refused with 401 and never read a job.

tests/gateway/test_jwt.py already proves the basic cases: ``alg: none``, HS256 signed with the
RS256 public key, expired, ``nbf`` in the future, wrong or missing ``aud``/``iss``, a tampered
role, another secret, malformed tokens. These are the variants it leaves out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY, issue_token
from tests.conftest import JWT_SECRET
from tests.factories import VirtualKeyFactory
from tests.gateway.test_jwt import claims, completed_job, hand_signed, hs256, poll
from tests.helpers import assert_unauthorized, b64url, b64url_decode_json, b64url_json

pytestmark = pytest.mark.django_db


@pytest.fixture
def foreign_job():
    """A job the forged tokens try to read."""
    return completed_job()


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"], ids=["unsigned", "junk-signature"])
def test_alg_none_in_any_spelling_is_401(api_client, foreign_job, alg, signature):
    token = f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(claims())}.{signature}"
    assert_unauthorized(poll(api_client, foreign_job, token), code="invalid_token")


def test_alg_none_is_401_on_an_rs256_gateway_too(api_client, foreign_job, rs256):
    token = hand_signed({"alg": "none", "typ": "JWT"}, claims(), secret=None)
    assert_unauthorized(poll(api_client, foreign_job, token), code="invalid_token")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_another_hmac_algorithm_with_the_right_secret_is_401(api_client, foreign_job, alg):
    token = jwt.encode(claims(), JWT_SECRET, algorithm=alg)
    assert_unauthorized(poll(api_client, foreign_job, token), code="invalid_token")


def test_hs256_signed_with_the_public_key_pem_without_newlines_is_401(
    api_client, foreign_job, rs256
):
    _, public_pem = rs256
    for secret in (public_pem.strip(), public_pem.replace("\n", "")):
        token = hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), secret=secret.encode())
        assert_unauthorized(poll(api_client, foreign_job, token), code="invalid_token")


def test_rs256_token_carrying_its_own_jwk_is_401(api_client, foreign_job, rs256):
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = attacker.public_key().public_numbers()

    def b64_int(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    jwk = {"kty": "RSA", "n": b64_int(numbers.n), "e": b64_int(numbers.e)}
    token = jwt.encode(claims(), attacker, algorithm="RS256", headers={"jwk": jwk, "kid": "x"})
    assert_unauthorized(poll(api_client, foreign_job, token), code="invalid_token")


def test_swapping_the_key_id_of_a_signed_token_is_401(api_client, key):
    other = VirtualKeyFactory()
    their_job = completed_job(virtual_key=other)
    header, payload, signature = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk).split(".")
    forged = b64url_json(b64url_decode_json(payload) | {"key_id": other.pk})
    response = poll(api_client, their_job, f"{header}.{forged}.{signature}")
    assert_unauthorized(response, code="invalid_token")


def test_extending_the_expiry_of_an_expired_token_is_401(api_client, foreign_job):
    header, payload, signature = hs256(claims(exp=int(time.time()) - 60)).split(".")
    forged = b64url_json(b64url_decode_json(payload) | {"exp": int(time.time()) + 3600})
    response = poll(api_client, foreign_job, f"{header}.{forged}.{signature}")
    assert_unauthorized(response, code="invalid_token")


def test_token_expired_a_second_ago_is_401(api_client, foreign_job):
    token = hs256(claims(exp=int(time.time()) - 1))
    assert_unauthorized(poll(api_client, foreign_job, token), code="invalid_token")


def test_nbf_in_the_future_is_401_on_an_rs256_gateway(api_client, foreign_job, rs256):
    private_pem, _ = rs256
    token = jwt.encode(claims(nbf=int(time.time()) + 600), private_pem, algorithm="RS256")
    assert_unauthorized(poll(api_client, foreign_job, token), code="invalid_token")


def test_wrong_audience_and_issuer_are_401_for_virtual_key_tokens(settings, api_client, key):
    job = completed_job(virtual_key=key)
    settings.GATEWAY_JWT_AUDIENCE = "ai-gateway"
    settings.GATEWAY_JWT_ISSUER = "https://auth.example.test"
    base = claims(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    right = {"aud": "ai-gateway", "iss": "https://auth.example.test"}
    assert poll(api_client, job, hs256(base | right)).status_code == 200
    for wrong in ({"aud": "ai-gateway-2"}, {"iss": "https://auth.example.test.evil"}):
        response = poll(api_client, job, hs256(base | right | wrong))
        assert_unauthorized(response, code="invalid_token")


def signed(payload_json: bytes) -> str:
    """An HS256 token over an arbitrary payload, correctly signed with the gateway's secret."""
    header = b64url_json({"alg": "HS256", "typ": "JWT"})
    signing_input = f"{header}.{b64url(payload_json)}"
    signature = hmac.new(JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'["admin"]', id="array"),
        pytest.param(b'"admin"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(json.dumps({"role": ROLE_ADMIN, "exp": "never"}).encode(), id="exp-string"),
        pytest.param(json.dumps({"role": ROLE_ADMIN, "exp": [1]}).encode(), id="exp-array"),
        pytest.param(b'{"role": "admin", "exp": NaN}', id="exp-nan"),
        pytest.param(
            json.dumps({"role": ROLE_VIRTUAL_KEY, "key_id": 2**70, "exp": 2**40}).encode(),
            id="key-id-beyond-bigint",
        ),
        pytest.param(
            json.dumps({"role": ROLE_VIRTUAL_KEY, "key_id": 1.0, "exp": 2**40}).encode(),
            id="key-id-float",
        ),
    ],
)
def test_signed_token_with_a_malformed_payload_is_401_never_a_500(api_client, foreign_job, payload):
    assert_unauthorized(poll(api_client, foreign_job, signed(payload)))


def test_signature_stripped_from_a_valid_token_is_401(api_client, foreign_job):
    header, payload, _ = hs256(claims()).split(".")
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        assert_unauthorized(poll(api_client, foreign_job, token))


def test_token_padded_with_base64_padding_or_whitespace_inside_is_401(api_client, foreign_job):
    header, payload, signature = hs256(claims()).split(".")
    for token in (f"{header}==.{payload}.{signature}", f"{header}.{payload} .{signature}"):
        assert_unauthorized(poll(api_client, foreign_job, token))


def test_a_valid_token_encoded_in_standard_base64_is_401(api_client, foreign_job):
    header, payload, _ = hs256(claims()).split(".")
    standard = base64.b64encode(b"\xff" * 32).decode()  # '+' and '/' are not base64url
    assert_unauthorized(poll(api_client, foreign_job, f"{header}.{payload}.{standard}"))
