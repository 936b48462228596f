"""What validating a request body costs, per request type: ``parse_request`` on the example
body each type's schema declares (the one the API document shows).

    python -m bench.schema_cost

Prints the best of several runs, in microseconds per body, for each type; the figures behind the
schema library's choice are in docs/measurements.md.
"""

from __future__ import annotations

import functools
import os
import timeit

CALLS = 20_000
REPEATS = 7


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    import django

    django.setup()
    from jobs.request_types import KINDS
    from jobs.schemas.base import parse_request

    for kind in KINDS:
        [body, *_] = kind.schema.model_json_schema()["examples"]
        parse_request(kind.schema, body)  # the example must be valid
        runs = timeit.repeat(
            functools.partial(parse_request, kind.schema, body), number=CALLS, repeat=REPEATS
        )
        print(f"{kind.request_type.value:16} {min(runs) / CALLS * 1e6:6.1f} µs per body")


if __name__ == "__main__":
    main()
