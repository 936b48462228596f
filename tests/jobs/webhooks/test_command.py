"""create_webhook_endpoint: the secret once, on the last line, kept only encrypted."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from standardwebhooks import Webhook

from jobs.webhooks.models import WebhookEndpoint
from tests.factories import VirtualKeyFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_webhook_endpoint", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_secret_is_printed_on_the_last_line_and_stored_only_encrypted():
    out, err = run("--name", "orders", "--url", "https://hooks.example.test/in")

    secret = out.rstrip("\n").splitlines()[-1]
    assert out.endswith(secret + "\n")
    assert secret.startswith("whsec_")
    Webhook(secret)  # a valid Standard Webhooks secret
    endpoint = WebhookEndpoint.objects.get(name="orders")
    assert endpoint.url == "https://hooks.example.test/in"
    assert endpoint.virtual_key is None
    assert secret not in endpoint.encrypted_secret
    assert endpoint.get_secret() == secret
    assert endpoint.secret_prefix == secret[:12]
    assert secret not in err and endpoint.secret_prefix in err


def test_key_binds_the_endpoint_to_that_virtual_key():
    key = VirtualKeyFactory(name="billing")

    run("--name", "billing-hook", "--url", "http://127.0.0.1:8000/", "--key", "billing")

    assert WebhookEndpoint.objects.get(name="billing-hook").virtual_key == key


@pytest.mark.parametrize(
    "url", ["ftp://example.test/x", "file:///etc/passwd", "example.test/hook", "http://"]
)
def test_a_url_that_is_not_http_is_refused(url):
    with pytest.raises(CommandError, match="http:// or https://"):
        run("--name", "bad", "--url", url)
    assert not WebhookEndpoint.objects.exists()


def test_an_unknown_key_and_a_taken_name_are_refused():
    with pytest.raises(CommandError, match="no virtual key named 'nobody'"):
        run("--name", "a", "--url", "https://example.test/", "--key", "nobody")
    run("--name", "a", "--url", "https://example.test/")
    with pytest.raises(CommandError, match="already exists"):
        run("--name", "a", "--url", "https://example.test/")
