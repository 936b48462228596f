from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "gateway.access"
    # The label the keys' tables, migrations, permissions and admin URLs were made under.
    label = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        # The OpenAPI document's description of the gateway's authentication.
        from gateway.access import schema  # noqa: F401
