"""How API responses are rendered: JSON, chosen without parsing the usual Accept headers.

The API answers only in JSON. DRF's negotiation parses and ranks the Accept header on every
request; for the headers clients actually send (none, ``*/*``, ``application/json``) the answer is
known in advance, so those skip it. Anything else is negotiated as before, so ``Accept:
text/html`` is still a 406. ``?format=`` is switched off (URL_FORMAT_OVERRIDE in settings).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

# Accept values that every JSON renderer satisfies as they stand.
PLAIN_ACCEPTS = frozenset({"", "*/*", "application/json", "application/*"})


class JSONFirstNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> Any:
        renderers = list(renderers)
        meta = request.META
        if (
            renderers
            and renderers[0].media_type == "application/json"
            and meta.get("HTTP_ACCEPT", "").strip() in PLAIN_ACCEPTS
            and not format_suffix
            and not meta.get("QUERY_STRING")  # may hold ?format=
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
