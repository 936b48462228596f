"""Hostile bytes in x-bf-async-job-result-ttl and in credentials, sent raw to the real web server:
the gateway answers a 400 naming the header (or 401), the server's HTTP parser refuses what is not
HTTP at all; never a 5xx, and no job is created. Unit-level cases:
tests/security/test_result_ttl_header.py."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.conftest import Database, Gateway

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]

TTL = b"x-bf-async-job-result-ttl"
BODY = b'{"model": "openai/ok", "prompt": "hostile header"}'


def send_raw(base_url: str, headers: list[bytes]) -> tuple[int, bytes]:
    """One POST of the submit, written byte for byte; returns the status and the body."""
    address = urlsplit(base_url)
    head = [
        b"POST /v1/async/completions HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(BODY)).encode(),
        b"Connection: close",
        *headers,
    ]
    with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
        conn.sendall(b"\r\n".join(head) + b"\r\n\r\n" + BODY)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def job_count(e2e_db: Database, key_id: int) -> int:
    from jobs.models import AsyncJob

    with e2e_db.access():
        return AsyncJob.objects.filter(virtual_key_id=key_id).count()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("١٢٠".encode(), id="arabic-indic-digits-utf8"),
        pytest.param(b"\xe9\xff", id="latin-1-bytes"),
        pytest.param(b"+60", id="plus-sign"),
        pytest.param(b"0x10", id="hex"),
        pytest.param(b"1e3", id="exponent"),
        pytest.param(b"9" * 4000, id="four-thousand-digits"),
    ],
)
def test_a_hostile_ttl_over_real_http_is_a_400_naming_the_header(
    gateway: Gateway, make_key: Callable[..., str], e2e_db: Database, value: bytes
) -> None:
    key = make_key()
    status, body = send_raw(
        gateway.base_url, [b"Authorization: Bearer " + key.encode(), TTL + b": " + value]
    )
    assert status == 400
    assert json.loads(body)["error"]["param"] == TTL.decode()
    assert job_count(e2e_db, e2e_db.key_ids[-1]) == 0


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"6\x000", id="nul"),
        pytest.param(b"60\rX-Injected: 1", id="bare-cr"),
        pytest.param(b"60\r\n X-Injected: 1", id="obsolete-line-folding"),
        pytest.param(b"9" * 20_000, id="twenty-thousand-digits"),
    ],
)
def test_bytes_that_are_not_http_are_refused_before_the_gateway_never_with_a_5xx(
    gateway: Gateway, make_key: Callable[..., str], e2e_db: Database, value: bytes
) -> None:
    key = make_key()
    status, _ = send_raw(
        gateway.base_url, [b"Authorization: Bearer " + key.encode(), TTL + b": " + value]
    )
    assert 400 <= status < 500
    assert job_count(e2e_db, e2e_db.key_ids[-1]) == 0


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param(b"sk-bf-\xe9\xff", id="latin-1-key"),
        pytest.param("ey中.e30.sig".encode(), id="utf8-token"),
        pytest.param(b"sk-bf-" + b"a" * 4000, id="long-key"),
    ],
)
def test_odd_bytes_in_a_credential_over_real_http_are_a_401(
    gateway: Gateway, credential: bytes
) -> None:
    for header in (b"Authorization: Bearer " + credential, b"x-bf-vk: " + credential):
        status, body = send_raw(gateway.base_url, [header])
        assert status == 401
        assert json.loads(body)["type"] == "authentication_error"
