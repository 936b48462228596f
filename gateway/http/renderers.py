"""How API responses are rendered: JSON, chosen without parsing the usual Accept headers.

The API answers only in JSON. DRF's negotiation parses and ranks the Accept header on every
request; for the headers clients actually send (none, ``*/*``, ``application/json``) the answer is
known in advance, so those skip it. Anything else is negotiated as before, so ``Accept:
text/html`` is still a 406. ``?format=`` is switched off (URL_FORMAT_OVERRIDE in settings).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

# Accept values that every JSON renderer satisfies as they stand.
PLAIN_ACCEPTS = frozenset({"", "*/*", "application/json", "application/*"})


def wants_plain_json(meta: Mapping[str, Any]) -> bool:
    """Whether a request's answer is JSON without negotiating: a plain Accept header (or none)
    and no query string (which may hold ?format=)."""
    return meta.get("HTTP_ACCEPT", "").strip() in PLAIN_ACCEPTS and not meta.get("QUERY_STRING")


class JSONFirstNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> Any:
        renderers = list(renderers)
        if (
            renderers
            and renderers[0].media_type == "application/json"
            and not format_suffix
            and wants_plain_json(request.META)
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
