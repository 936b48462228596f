"""What every fuzzed response is held to: never a 5xx, and only what the API document declares.

Shared by the bounded run in the test suite (tests/fuzz) and the long run (``python -m fuzz.run``).
"""

from __future__ import annotations

from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SERVER_ERROR_CHECK = "not_a_server_error"
# A response that fails any of these does not conform to the document.
CONFORMANCE_CHECKS = (
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
CHECK_NAMES = (SERVER_ERROR_CHECK, *CONFORMANCE_CHECKS)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
