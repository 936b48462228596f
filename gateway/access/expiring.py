"""The per-process cache the web processes keep keys and revocations in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from cachetools import TLRUCache
from django.conf import settings

V = TypeVar("V")


class ExpiringCache(Generic[V]):
    """Values kept for the seconds a setting holds when each is stored (at 0, none is kept).

    Thread-safe (cachetools' caches are not). ``max_entries`` is a backstop: when full, expired
    entries go first, then the least recently used.
    """

    def __init__(
        self,
        seconds_setting: str,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 20_000,
    ) -> None:
        self._entries: TLRUCache[Hashable, V] = TLRUCache(
            max_entries,
            ttu=lambda _key, _value, now: now + getattr(settings, seconds_setting),
            timer=clock,
        )
        self._lock = threading.Lock()

    def find(self, key: Hashable) -> V | None:
        try:  # one lookup: ``get`` would look the key up twice
            with self._lock:
                return self._entries[key]
        except KeyError:
            return None

    def put(self, *items: tuple[Hashable, V]) -> None:
        with self._lock:
            for key, value in items:
                self._entries[key] = value

    def forget(self, *keys: Hashable) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[Hashable]:
        with self._lock:
            return iter(list(self._entries))
