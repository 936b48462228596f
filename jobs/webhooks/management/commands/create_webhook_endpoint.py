from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.access.models import VirtualKey
from jobs.webhooks.models import WebhookEndpoint
from jobs.webhooks.services import InvalidWebhookUrl, create_endpoint


class Command(BaseCommand):
    help = (
        "Register a webhook endpoint. Its signing secret (whsec_…) is printed once, on the "
        "last line; it is kept encrypted and never shown again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="What x-bf-async-webhook names.")
        parser.add_argument("--url", required=True, help="The http(s) URL notices go to.")
        parser.add_argument(
            "--key",
            metavar="KEYNAME",
            help="Only this virtual key's jobs may use the endpoint (default: any key's).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("--name must not be empty")
        if WebhookEndpoint.objects.filter(name=name).exists():
            raise CommandError(f"a webhook endpoint named {name!r} already exists")
        virtual_key = None
        if options["key"] is not None:
            virtual_key = VirtualKey.objects.filter(name=options["key"]).first()
            if virtual_key is None:
                raise CommandError(f"no virtual key named {options['key']!r}")
        try:
            endpoint, secret = create_endpoint(
                name=name, url=options["url"], virtual_key=virtual_key
            )
        except InvalidWebhookUrl as exc:
            raise CommandError(f"--url must be an http:// or https:// URL: {exc}") from exc
        self.stderr.write(
            f"Created webhook endpoint {endpoint.name!r} ({endpoint.secret_prefix}…). "
            "Store its signing secret now; it is not shown again."
        )
        self.stdout.write(secret)
