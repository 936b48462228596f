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

        _skip_closing_in_process_caches()


# Cache backends that hold nothing to close: their close() does nothing.
IN_PROCESS_CACHES = frozenset(
    {"django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache"}
)


def closes_nothing(caches: dict[str, dict[str, object]]) -> bool:
    return all(config.get("BACKEND") in IN_PROCESS_CACHES for config in caches.values())


def _skip_closing_in_process_caches() -> None:
    """Django closes every cache after each request; with in-process caches only, that walk
    closes nothing, and every API request pays for it."""
    from django.conf import settings
    from django.core.cache import close_caches
    from django.core.signals import request_finished

    if closes_nothing(settings.CACHES):
        request_finished.disconnect(close_caches)
