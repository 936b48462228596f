from __future__ import annotations

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from providers import crypto


class Protocol(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible (/v1/completions)"
    ANTHROPIC = "anthropic", "Anthropic Messages (/v1/messages)"


class ProviderConfig(models.Model):
    """A provider set in the admin; it overrides an environment provider of the same name."""

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9_.-]*$", "Lower-case letters, digits, _ . -")],
        help_text='The "provider" part of "provider/model".',
    )
    protocol = models.CharField(max_length=16, choices=Protocol.choices, default=Protocol.OPENAI)
    base_url = models.URLField(
        max_length=500,
        help_text="e.g. https://api.openai.com/v1 (OpenAI-compatible) or https://api.anthropic.com",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "provider"
        # Whoever edits a provider decides where its stored keys are sent, so the stock add and
        # change permissions are not enough: the admin asks for this one (superusers have it).
        permissions = [
            ("manage_provider_credentials", "Can add, change and delete providers and their keys")
        ]

    def __str__(self) -> str:
        return self.name


class ProviderKey(models.Model):
    """One API key of a provider, encrypted at rest; keys are chosen at random by weight."""

    provider = models.ForeignKey(ProviderConfig, on_delete=models.CASCADE, related_name="keys")
    label = models.CharField(max_length=100)
    encrypted_key = models.TextField(editable=False)
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider__name", "label"]
        verbose_name = "provider key"

    def __str__(self) -> str:
        return f"{self.provider.name}: {self.label}"

    def set_key(self, raw_key: str) -> None:
        self.encrypted_key = crypto.encrypt(raw_key)

    def get_key(self) -> str | None:
        return crypto.decrypt(self.encrypted_key)


class ModelPrice(models.Model):
    """An admin's price for one provider's model; it wins over the bundled price table."""

    provider = models.CharField(
        max_length=100, help_text='The provider\'s name as configured (the "provider" part).'
    )
    model = models.CharField(max_length=300, help_text='The "model" part of "provider/model".')
    input_per_million = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        validators=[MinValueValidator(0)],
        help_text="USD per million prompt (input) tokens.",
    )
    output_per_million = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        validators=[MinValueValidator(0)],
        help_text="USD per million completion (output) tokens.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "model"]
        verbose_name = "model price"
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="model_price_per_model")
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"
