from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The project itself: rungateway, the settings' system checks, the pages it serves.

    The keys-and-auth domain is the app in ``gateway.access``, which keeps the label
    ``gateway`` its tables, migrations and permissions were made under.
    """

    name = "gateway"
    label = "gateway_project"
    verbose_name = "Gateway project"

    def ready(self) -> None:
        from gateway import checks  # noqa: F401  (registers the settings' system checks)
