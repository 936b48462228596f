"""Database connections close when the web server's thread that opened them ends.

Django keeps one connection per thread. granian ends a request thread that has been idle for a
while (``--blocking-threads-idle-timeout``) and starts another when requests come back; the
ended thread's connection object only goes when the garbage collector next breaks its reference
cycles, which in a busy process can be minutes away. Until then its socket stays open, and a
web process behind bursty traffic held several times WEB_THREADS connections, enough to reach
Postgres' ``max_connections`` (docs/measurements.md, "Connections of ended threads").

So at a thread's first request, ``track_thread`` leaves a ``_ThreadEnd`` in the thread's own
storage, holding the thread's connection wrappers. The thread's storage goes when the thread
ends, and with it the ``_ThreadEnd``, which closes the connections then.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger(__name__)

_this_thread = threading.local()


class _ThreadEnd:
    """Closes its thread's database connections when it is dropped with the thread."""

    def __init__(self, wrappers: list[BaseDatabaseWrapper]) -> None:
        self.wrappers = wrappers

    def __del__(self) -> None:
        if sys.is_finalizing():
            return  # the process is ending: its sockets close with it, and nothing may wait now
        for wrapper in self.wrappers:
            try:
                # The wrapper's own close() checks that it runs on the thread that opened the
                # connection, which it cannot tell once the thread is gone: close the driver's.
                if wrapper.connection is not None:
                    wrapper.connection.close()
                    wrapper.connection = None
            except Exception:  # a finalizer must not raise; the socket is lost anyway
                logger.warning("closing an ended thread's %s connection failed", wrapper.alias)


def track_thread(**kwargs: Any) -> None:
    """``request_started`` receiver: at a thread's first request, leave its ``_ThreadEnd``."""
    if getattr(_this_thread, "end", None) is None:
        _this_thread.end = _ThreadEnd([connections[alias] for alias in connections])
