"""What Django runs around each request of a web process (gateway/apps.py).

Read in a fresh process: Django's test client reconnects some of these receivers around each
request it makes, so the test process's own lists are not a web process's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

RECEIVERS = """
import json, weakref, django
django.setup()
from django.core.signals import request_finished, request_started

def names(signal):
    found = []
    for _, ref, *_ in signal.receivers:
        receiver = ref() if isinstance(ref, weakref.ReferenceType) else ref
        found.append(f"{receiver.__module__}.{receiver.__qualname__}")
    return found

print(json.dumps({"started": names(request_started), "finished": names(request_finished)}))
"""

CLOSE_OLD = "django.db.close_old_connections"
RESET_QUERIES = "django.db.reset_queries"
RESET_URLCONF = "django.core.handlers.base.reset_urlconf"
TRACK_THREAD = "gateway.thread_connections.track_thread"  # tests/gateway/test_thread_connections.py


def receivers(**environ: str) -> dict[str, list[str]]:
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "gateway.settings"} | environ
    done = subprocess.run(
        [sys.executable, "-c", RECEIVERS], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_a_request_closes_old_connections_once_when_it_starts_and_resets_nothing_after():
    found = receivers(DEBUG="false")
    assert found["started"] == [CLOSE_OLD, TRACK_THREAD]
    assert CLOSE_OLD not in found["finished"]
    assert RESET_URLCONF not in found["finished"]


def test_the_query_log_is_emptied_at_each_request_only_with_debug_on():
    assert RESET_QUERIES in receivers(DEBUG="true")["started"]
    assert RESET_QUERIES not in receivers(DEBUG="false")["started"]
