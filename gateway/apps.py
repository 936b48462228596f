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
        _skip_redundant_request_signals()
        _close_connections_of_ended_threads()


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


def _skip_redundant_request_signals() -> None:
    """Receivers Django runs around every request that change nothing here:

    - ``close_old_connections`` runs when a request starts and again when it ends; the start's
      run alone closes a connection that is broken or past ``DB_CONN_MAX_AGE`` before the
      next request of its thread uses it;
    - ``reset_urlconf`` puts the thread's URLconf back to the default after a request that
      changed it; no middleware here changes it (and each request sets it again at its start);
    - ``reset_queries`` empties the log of queries, which is kept only with DEBUG on.
    """
    from django.conf import settings
    from django.core.handlers.base import reset_urlconf
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, reset_queries

    request_finished.disconnect(close_old_connections)
    request_finished.disconnect(reset_urlconf)
    if not settings.DEBUG:
        request_started.disconnect(reset_queries)


def _close_connections_of_ended_threads() -> None:
    """A request thread's database connections close when the thread ends
    (``gateway.thread_connections``)."""
    from django.core.signals import request_started

    from gateway.thread_connections import track_thread

    request_started.connect(track_thread, dispatch_uid="gateway-track-thread")
