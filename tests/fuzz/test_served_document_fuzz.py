"""A bounded schemathesis run in-process (WSGI) over every operation of the served /openapi.json.

Every generated request carries a valid virtual key, and half the bodies numbers past every bound
(fuzz/numbers.py); every response must not be a 5xx and must conform to the document (status
code, content type, body schema). The run is seeded and
derandomized, so it sends the same requests every time; ``make fuzz`` runs the long version
against a real web process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from fuzz.numbers import add_extreme_numbers
from fuzz.run import CHECKS
from jobs.request_types import KINDS

SEED = 20261126
MAX_EXAMPLES = 25  # per operation and phase; the coverage phase adds its own few hundred

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "with-security-parameters": False,  # the key below is sent instead
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/openapi.json", WSGIHandler(), config=CONFIG)
add_extreme_numbers(schema)


@pytest.fixture(autouse=True)
def _requests_keep_the_test_transaction(db: None) -> Iterator[None]:
    """As Django's test client does: requests must not close the test's database connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_the_served_document_lists_every_api_operation():
    """The fuzzing below covers what the document lists, so the document must list it all."""
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert labels == {"GET /health", "GET /v1/async/jobs", "GET /v1/usage"} | {
        f"{method} /v1/{kind.path}{suffix}"
        for kind in KINDS
        for method, suffix in [("POST", ""), ("GET", "/{job_id}"), ("POST", "/{job_id}/cancel")]
    }


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # one key for every case
def test_no_generated_request_gets_a_5xx_or_an_undocumented_response(case: Any, key: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {key.raw}"}, checks=CHECKS)
