from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.models import ModelPrice


def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None
    if not value.is_finite() or value < 0:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = (
        "Set the price of PROVIDER/MODEL (PROVIDER as configured), in USD per million tokens. "
        "It wins over the bundled price table for jobs finished from now on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", metavar="PROVIDER/MODEL")
        for side in ("input", "output"):
            parser.add_argument(
                f"--{side}-per-million",
                required=True,
                type=str,
                metavar="USD",
                help=f"USD per million {side} tokens (0 or more).",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        provider, _, model = options["model"].partition("/")
        if not provider or not model:
            raise CommandError("the model must look like provider/model")
        prices = {}
        for side in ("input", "output"):
            try:
                prices[f"{side}_per_million"] = _usd(options[f"{side}_per_million"])
            except ValueError:
                raise CommandError(
                    f"--{side}-per-million must be a number of USD, 0 or more"
                ) from None
        try:
            ModelPrice(provider=provider, model=model, **prices).full_clean(
                validate_unique=False, validate_constraints=False
            )
        except ValidationError as exc:
            field, errors = next(iter(exc.message_dict.items()))
            raise CommandError(f"{field.replace('_', '-')}: {' '.join(errors)}") from None
        ModelPrice.objects.update_or_create(provider=provider, model=model, defaults=prices)
        self.stdout.write(
            f"{provider}/{model}: {prices['input_per_million']} USD per million input tokens, "
            f"{prices['output_per_million']} USD per million output tokens"
        )
