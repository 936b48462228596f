"""The production shape passes ``check --deploy``; hosts, proxies and TLS behave as configured."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from tests.helpers import SUBMIT_URL, VALID_BODY, assert_error_shape, bearer

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-password-for-this-test"
# What an operator puts in .env for a gateway reached at https://gw.example.com through a proxy.
DOT_ENV = {
    "SECRET_KEY": "a-secret-key-for-this-test-only-0123456789-abcdefghijklmnopqrstuvwxyz",
    "ALLOWED_HOSTS": "gw.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://gw.example.com",
    "GATEWAY_BEHIND_PROXY": "true",
    "GATEWAY_TLS": "true",
    "POSTGRES_PASSWORD": "a-database-password",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(value: str, dot_env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``, from ``.env``."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if dot_env.get(name):
            return dot_env[name]
        if operator == "?":
            raise AssertionError(f"compose refuses to start without {name}: {argument}")
        return argument if operator == "-" else ""

    return _VARIABLE.sub(substitute, value)


def compose_environment(service: str, dot_env: dict[str, str]) -> dict[str, str]:
    """The environment a gateway container of docker-compose.yml starts with."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    definition = compose["services"][service]
    dockerfile = (ROOT / "Dockerfile").read_text()
    environment = dict(re.findall(r"(\w+)=(\S+)", re.search(r"^ENV (.*)$", dockerfile, re.M)[1]))
    assert [entry["path"] for entry in definition["env_file"]] == [".env"]
    environment.update(dot_env)
    environment.update(
        {
            name: interpolate(str(value), dot_env)
            for name, value in definition["environment"].items()
        }
    )
    return environment


def test_check_deploy_passes_in_docker_composes_environment(tmp_path):
    env = compose_environment("web", DOT_ENV)
    env["GATEWAY_VAR_DIR"] = str(tmp_path)  # the image's /app/var, here
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout, result.stdout + result.stderr


def test_compose_refuses_to_start_without_allowed_hosts():
    dot_env = {name: value for name, value in DOT_ENV.items() if name != "ALLOWED_HOSTS"}
    with pytest.raises(AssertionError, match="ALLOWED_HOSTS"):
        compose_environment("web", dot_env)


def settings_under(**environ: str) -> dict[str, Any]:
    """The security settings gateway.settings builds for this environment, in a fresh process."""
    names = [
        "ALLOWED_HOSTS",
        "USE_X_FORWARDED_HOST",
        "SECURE_PROXY_SSL_HEADER",
        "SECURE_SSL_REDIRECT",
        "SECURE_REDIRECT_EXEMPT",
        "SECURE_HSTS_SECONDS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "CSRF_TRUSTED_ORIGINS",
    ]
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "gateway.settings", **environ}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    values: dict[str, Any] = json.loads(out.stdout)
    return values


def test_embedded_default_answers_on_loopback_names_only_and_trusts_no_forwarded_headers(
    tmp_path,
):
    values = settings_under(GATEWAY_VAR_DIR=str(tmp_path))
    assert values["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    assert values["USE_X_FORWARDED_HOST"] is False
    assert values["SECURE_PROXY_SSL_HEADER"] is None
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SESSION_COOKIE_SECURE"] is False


def test_tls_turns_on_redirects_hsts_and_secure_cookies_but_not_for_health(tmp_path):
    values = settings_under(GATEWAY_VAR_DIR=str(tmp_path), GATEWAY_TLS="true")
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_REDIRECT_EXEMPT"] == ["^(health|ready)$"]
    assert values["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True


def test_allowed_hosts_and_trusted_origins_come_from_the_environment(tmp_path):
    values = settings_under(
        GATEWAY_VAR_DIR=str(tmp_path),
        ALLOWED_HOSTS="gw.example.com, web",
        CSRF_TRUSTED_ORIGINS="https://gw.example.com",
        GATEWAY_BEHIND_PROXY="true",
    )
    assert values["ALLOWED_HOSTS"] == ["gw.example.com", "web"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://gw.example.com"]
    assert values["USE_X_FORWARDED_HOST"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.fixture
def deployed(settings: Any) -> Any:
    """Explicit host names, as a deployment has them."""
    settings.ALLOWED_HOSTS = ["gw.example.com"]
    return settings


@pytest.mark.django_db
def test_a_foreign_host_is_a_400_in_the_error_shape(deployed, key, dispatched):
    response = Client().post(
        SUBMIT_URL,
        VALID_BODY,
        content_type="application/json",
        headers={**bearer(key.raw), "Host": "evil.example"},
    )
    assert_error_shape(response, 400)
    assert "Location" not in response
    assert dispatched.rung == 0


def test_health_from_a_foreign_host_is_a_400_in_the_error_shape(deployed):
    assert_error_shape(Client().get("/health", headers={"Host": "evil.example"}), 400)


@pytest.mark.django_db
def test_forwarded_host_is_ignored_unless_the_gateway_is_behind_a_proxy(deployed, key, dispatched):
    response = Client().post(
        SUBMIT_URL,
        VALID_BODY,
        content_type="application/json",
        headers={**bearer(key.raw), "Host": "gw.example.com", "X-Forwarded-Host": "evil.example"},
    )
    assert response.status_code == 202
    assert response["Location"].startswith("http://gw.example.com/")


@pytest.fixture
def tls(deployed: Any) -> Any:
    deployed.SECURE_SSL_REDIRECT = True
    deployed.SECURE_REDIRECT_EXEMPT = [r"^(health|ready)$"]
    deployed.SECURE_HSTS_SECONDS = 3600
    return deployed


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_but_health_is_answered(tls):
    client = Client(headers={"Host": "gw.example.com"})
    redirected = client.get("/openapi.json")
    assert redirected.status_code == 301
    assert redirected["Location"] == "https://gw.example.com/openapi.json"
    assert client.get("/health").status_code == 200


def test_https_answers_carry_hsts(tls):
    response = Client(headers={"Host": "gw.example.com"}).get("/openapi.json", secure=True)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"].startswith("max-age=3600")


@pytest.fixture
def admin_user(settings: Any) -> Any:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


@pytest.fixture
def behind_tls_proxy(settings: Any) -> Any:
    """GATEWAY_BEHIND_PROXY, and a proxy that sends its own upstream name as the Host."""
    settings.ALLOWED_HOSTS = ["web"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    return settings


def log_in_through_the_proxy() -> tuple[Client, int]:
    browser = Client(
        enforce_csrf_checks=True,
        headers={"Host": "web", "X-Forwarded-Proto": "https", "Origin": "https://gw.example.com"},
    )
    token = browser.get(reverse("admin:login")).context["csrf_token"]
    response = browser.post(
        reverse("admin:login"),
        {"username": "root", "password": PASSWORD, "csrfmiddlewaretoken": str(token)},
    )
    return browser, response.status_code


@pytest.mark.django_db
def test_admin_login_through_a_tls_proxy_needs_the_origin_in_csrf_trusted_origins(
    behind_tls_proxy, admin_user
):
    browser, status = log_in_through_the_proxy()
    assert status == 403
    assert "_auth_user_id" not in browser.session


@pytest.mark.django_db
def test_admin_login_through_a_tls_proxy_succeeds_with_csrf_trusted_origins(
    behind_tls_proxy, admin_user
):
    behind_tls_proxy.CSRF_TRUSTED_ORIGINS = ["https://gw.example.com"]
    browser, status = log_in_through_the_proxy()
    assert status == 302
    assert browser.session["_auth_user_id"] == str(admin_user.pk)


@pytest.mark.django_db
def test_admin_login_still_refuses_a_form_without_its_csrf_token(behind_tls_proxy, admin_user):
    behind_tls_proxy.CSRF_TRUSTED_ORIGINS = ["https://gw.example.com"]
    browser = Client(
        enforce_csrf_checks=True,
        headers={"Host": "web", "X-Forwarded-Proto": "https", "Origin": "https://gw.example.com"},
    )
    response = browser.post(reverse("admin:login"), {"username": "root", "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in browser.session
