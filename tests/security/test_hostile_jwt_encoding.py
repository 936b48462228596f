"""A bearer token that is not ASCII cannot be a JWT: refused with 401, never a 500."""

from __future__ import annotations

import pytest

from tests.helpers import assert_unauthorized, bearer, unknown_job_url

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("\ud800.e30.sig", id="lone-surrogate"),
        pytest.param("eyJhbGciOiJIUzI1NiJ9.e30.sig\udcff", id="trailing-surrogate"),
        pytest.param("ey\u00e9.e30.sig", id="latin-1"),
        pytest.param("ey\u4e2d.e30.sig", id="cjk"),
    ],
)
def test_a_token_that_is_not_ascii_is_401_not_a_500(api_client, token):
    response = api_client.get(unknown_job_url(), headers=bearer(token))
    assert_unauthorized(response, code="invalid_token")
