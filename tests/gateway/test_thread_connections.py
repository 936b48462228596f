"""A request thread's database connections close when the thread ends, without waiting for the
garbage collector (gateway/thread_connections.py)."""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections

from gateway import thread_connections
from gateway.thread_connections import track_thread

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counts free objects meanwhile: what a busy process does between its rare
    full collections."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _is_closed(driver_connection: Any) -> bool:
    if isinstance(driver_connection, sqlite3.Connection):
        try:
            driver_connection.execute("SELECT 1")
        except sqlite3.ProgrammingError:
            return True
        return False
    return bool(driver_connection.closed)


def _connection_of_a_thread(at_request_start: Callable[[], None]) -> Any:
    """The driver connection a thread opened after ``at_request_start``, once the thread ended."""
    opened: list[Any] = []

    def request() -> None:
        at_request_start()
        wrapper = connections["default"]
        wrapper.ensure_connection()
        opened.append(wrapper.connection)

    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
    return opened[0]


def test_the_connection_of_an_ended_request_thread_is_closed(no_collector):
    assert _is_closed(_connection_of_a_thread(track_thread))


def test_without_it_the_connection_stays_open_until_the_collector_runs(no_collector):
    left = _connection_of_a_thread(lambda: None)
    try:
        assert not _is_closed(left)
    finally:
        left.close()


def test_a_thread_is_tracked_once_however_many_requests_it_serves():
    def requests() -> None:
        track_thread()
        end = thread_connections._this_thread.end
        track_thread()
        seen.append(end is thread_connections._this_thread.end)

    seen: list[bool] = []
    thread = threading.Thread(target=requests)
    thread.start()
    thread.join()
    assert seen == [True]
