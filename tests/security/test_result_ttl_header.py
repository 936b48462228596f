"""Hostile values of x-bf-async-job-result-ttl: a clean 400 naming the header, or accepted where
the value is a plain positive number of seconds; never a 500, nothing stored, nothing echoed.

tests/jobs/test_submit_api.py::test_invalid_result_ttl_header_is_400_naming_it covers the
first basic cases (0, negatives, 1.5, 1e3, one Arabic-Indic digit, CR/LF with a second header).
"""

from __future__ import annotations

import pytest

from jobs.models import AsyncJob
from jobs.ttl import TTL_HEADER
from tests.helpers import SUBMIT_URL, VALID_BODY, assert_error_shape

pytestmark = pytest.mark.django_db

REFUSED = [
    pytest.param("١٢٠", id="arabic-indic-digits"),
    pytest.param("\uff16\uff10", id="fullwidth-digits"),
    pytest.param("\u00b2", id="superscript-two"),
    pytest.param("+60", id="plus-sign"),
    pytest.param("0x10", id="hex"),
    pytest.param("1e3", id="exponent"),
    pytest.param("60.0", id="decimal"),
    pytest.param("6 0", id="inner-space"),
    pytest.param("60, 60", id="repeated-header-joined"),
    pytest.param("-0", id="negative-zero"),
    pytest.param("\x00", id="nul"),
    pytest.param("60\x00", id="trailing-nul"),
    pytest.param("6\x000", id="inner-nul"),
    pytest.param("60\r\n", id="trailing-crlf"),
    pytest.param("\r\n60", id="leading-crlf"),
    pytest.param("60\n", id="trailing-lf"),
    pytest.param("60\r", id="trailing-cr"),
    pytest.param("60\r\nSet-Cookie: session=stolen", id="crlf-injected-cookie"),
    pytest.param("60\nX-Injected: 1", id="lf-injected-header"),
    pytest.param("9" * 10_000, id="ten-thousand-digits"),
    pytest.param("0" * 10_000 + "60", id="ten-thousand-leading-zeros"),
    pytest.param(" " * 10_000, id="ten-thousand-spaces"),
    pytest.param("60" + "\u200b", id="zero-width-space"),
    pytest.param("\ufeff60", id="byte-order-mark"),
]

ACCEPTED = [
    pytest.param("60", id="plain"),
    pytest.param(" 60 ", id="surrounding-spaces"),
    pytest.param("\t60\t", id="surrounding-tabs"),
    pytest.param("060", id="leading-zero"),
]


def submit_with_ttl(key_client, value: str):
    return key_client.post(SUBMIT_URL, VALID_BODY, format="json", headers={TTL_HEADER: value})


@pytest.mark.parametrize("value", REFUSED)
def test_hostile_result_ttl_is_400_naming_the_header(key_client, value):
    response = submit_with_ttl(key_client, value)
    body = assert_error_shape(response, 400, code="invalid_result_ttl", param=TTL_HEADER)
    assert AsyncJob.objects.count() == 0
    assert body["error"]["message"].startswith(TTL_HEADER)  # a fixed text, the value not echoed
    assert "Set-Cookie" not in response.headers and "X-Injected" not in response.headers


@pytest.mark.parametrize("value", ACCEPTED)
def test_plain_result_ttl_with_optional_whitespace_is_accepted(key_client, dispatched, value):
    response = submit_with_ttl(key_client, value)
    assert response.status_code == 202, response.content
    assert AsyncJob.objects.get().result_ttl == 60
