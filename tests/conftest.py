from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from gateway.access.revocation import revocation_cache
from providers import registry
from tests.factories import VirtualKeyFactory
from tests.helpers import Bells

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-signing"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        metavar="DIR",
        default=None,
        help="where tests/browser saves its screenshots of the admin (default: a temporary "
        "directory; `make screenshots` writes docs/screenshots)",
    )


@pytest.fixture(autouse=True)
def _gateway_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test sees the same providers and JWT settings, whatever the shell exported."""
    for name in registry.ENV_PROVIDERS:
        monkeypatch.delenv(f"{name.upper()}_API_KEY", raising=False)
        monkeypatch.delenv(f"{name.upper()}_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-upstream-openai-secret")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-upstream-secret")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    settings.GATEWAY_JWT_ALGORITHM = "HS256"
    settings.GATEWAY_JWT_SECRET = JWT_SECRET
    settings.GATEWAY_JWT_AUDIENCE = ""
    settings.GATEWAY_JWT_ISSUER = ""
    settings.GATEWAY_PROVIDER_CACHE_SECONDS = 0
    # Submits publish from the calling thread, so tests see each publish as it happens;
    # tests/jobs/test_dispatch.py covers the background publisher itself.
    settings.GATEWAY_DISPATCH_IN_BACKGROUND = False
    registry.clear_cache()
    # Revocation answers are cached per process; the rows behind them are rolled back.
    revocation_cache.clear()
    yield
    registry.clear_cache()
    revocation_cache.clear()


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> Bells:
    """Bells counted instead of published to the broker."""
    bells = Bells()
    monkeypatch.setattr("jobs.dispatch._publish", bells.ring)
    return bells


@pytest.fixture
def key(db: None) -> Any:
    return VirtualKeyFactory()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def key_client(key: Any) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw}")
    return api
