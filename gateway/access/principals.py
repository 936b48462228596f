from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from rest_framework.request import Request

from gateway.access.models import VirtualKey


@dataclass(frozen=True)
class Principal:
    """Who is calling: a virtual key (directly or through its JWT), or an admin JWT."""

    virtual_key: VirtualKey | None
    is_admin: bool = False

    is_authenticated = True  # what DRF's IsAuthenticated asks of request.user

    def may_use(self, model: str) -> bool:
        return self.is_admin or self.virtual_key is None or self.virtual_key.allows(model)


def principal_of(request: Request) -> Principal:
    """The caller of an authenticated API request (set by GatewayAuthentication)."""
    return cast(Principal, request.user)
