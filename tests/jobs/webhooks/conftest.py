from __future__ import annotations

from typing import Any

import pytest

from jobs.webhooks.models import WebhookEndpoint
from jobs.webhooks.services import create_endpoint


@pytest.fixture
def endpoint(db: None) -> WebhookEndpoint:
    made, secret = create_endpoint(name="orders", url="http://127.0.0.1:9/hook")
    made.secret = secret  # type: ignore[attr-defined]  # the test's copy only
    return made


@pytest.fixture
def bound_endpoint(key: Any) -> WebhookEndpoint:
    made, _ = create_endpoint(name="mine", url="https://example.test/hook", virtual_key=key)
    return made
