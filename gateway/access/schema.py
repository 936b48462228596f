"""OpenAPI description of the gateway's authentication, for drf-spectacular."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class GatewayAuthenticationScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer <virtual key or JWT>``; ``x-bf-vk`` is an accepted alternative."""

    target_class = "gateway.access.authentication.GatewayAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A virtual key (sk-bf-…), a virtual-key JWT or an admin JWT. "
            "The virtual key may also be sent as the x-bf-vk header.",
        }
