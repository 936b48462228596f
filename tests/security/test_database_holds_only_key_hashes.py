"""No table of the database holds a raw virtual key or a raw provider key, however it was made.

Each path is proven on the key's own row elsewhere (tests/gateway/test_keys.py,
test_commands.py, test_admin.py); this scans every column of every table after all of them, and
after the keys have been used to submit and poll.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from gateway.access.models import VirtualKey
from tests.gateway.test_admin import create_key_through_admin, shown_key
from tests.helpers import SUBMIT_URL, VALID_BODY, bearer, poll_url
from tests.providers.test_admin import new_provider_form

pytestmark = pytest.mark.django_db

PROVIDER_KEY = "sk-acme-very-secret-upstream-key"


def every_stored_value() -> list[str]:
    """Every value of every row of every table, as text."""
    values: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            values.extend(str(value) for row in cursor.fetchall() for value in row)
    return values


def test_no_table_holds_a_raw_virtual_key_or_provider_key(admin_client, api_client, dispatched):
    _, from_model = VirtualKey.create_with_key(name="from-model")
    out = io.StringIO()
    call_command("create_virtual_key", "--name", "from-command", stdout=out)
    from_command = out.getvalue().strip().splitlines()[-1]
    from_admin = shown_key(create_key_through_admin(admin_client))
    provider = admin_client.post(reverse("admin:providers_providerconfig_add"), new_provider_form())
    assert provider.status_code == 302, provider.content
    raw_keys = [from_model, from_command, from_admin]
    for raw in raw_keys:
        submitted = api_client.post(SUBMIT_URL, VALID_BODY, format="json", headers=bearer(raw))
        assert submitted.status_code == 202, submitted.content
        polled = api_client.get(poll_url(submitted.json()["id"]), headers=bearer(raw))
        assert polled.status_code == 202

    stored = "\n".join(every_stored_value())

    assert VirtualKey.objects.count() == 3
    for secret in [*raw_keys, PROVIDER_KEY]:
        assert secret not in stored
        # The part after the display prefix is the secret; no slice of it long enough to matter.
        tail = secret[10:]
        assert all(tail[i : i + 16] not in stored for i in range(len(tail) - 15))
