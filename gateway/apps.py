from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        # Imported for their side effects: system checks and the OpenAPI auth extension.
        from gateway import checks, schema  # noqa: F401
