"""The container health check asks for /health under a host name the gateway answers to."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway.healthcheck import host_to_ask_for


def probe(*urls: str, allowed_hosts: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALLOWED_HOSTS": allowed_hosts}
    return subprocess.run(
        [sys.executable, "-m", "gateway.healthcheck", *urls],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        (["gw.example.com", "web"], "gw.example.com"),
        ([".example.com"], "example.com"),
        (["*"], "localhost"),
        ([], "localhost"),
    ],
)
def test_the_host_asked_for_is_one_the_gateway_answers_to(allowed, host):
    assert host_to_ask_for(allowed) == host


@pytest.mark.django_db(transaction=True)
def test_a_deployment_answering_only_its_public_name_is_healthy(live_server, settings):
    settings.ALLOWED_HOSTS = ["gw.example.com"]
    assert probe(f"{live_server.url}/health", allowed_hosts="gw.example.com").returncode == 0


@pytest.mark.django_db(transaction=True)
def test_a_web_process_that_refuses_the_host_is_unhealthy(live_server, settings):
    settings.ALLOWED_HOSTS = ["gw.example.com"]
    result = probe(f"{live_server.url}/health", allowed_hosts="other.example.com")
    assert result.returncode == 1
    assert "400" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_every_url_must_answer_200_so_no_worker_heartbeat_is_unhealthy(live_server, settings):
    settings.ALLOWED_HOSTS = ["gw.example.com"]
    urls = (f"{live_server.url}/health", f"{live_server.url}/ready")
    result = probe(*urls, allowed_hosts="gw.example.com")
    assert result.returncode == 1  # no worker engine runs here: /ready is a 503
    assert "503" in result.stderr
