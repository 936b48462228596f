from __future__ import annotations

import fnmatch
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from gateway.access.keys import display_prefix, generate_key, hash_key


class BudgetPeriod(models.TextChoices):
    """UTC calendar periods a budget is spent over (``gateway.access.budgets.period_start``)."""

    DAILY = "daily"
    WEEKLY = "weekly"  # ISO weeks, starting on Monday
    MONTHLY = "monthly"
    TOTAL = "total"  # since the key was created


# A key's share of the workers (VirtualKey.share): keys are served by their jobs processing per
# share. The bound keeps one key's weight within three orders of magnitude of another's.
MIN_SHARE = 1
MAX_SHARE = 1000


class VirtualKey(models.Model):
    """A key an app uses to call the gateway. Only an HMAC of the key is stored."""

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(
        max_length=16, editable=False, help_text="First characters, for display."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text='Patterns of "provider/model" this key may use, e.g. ["openai/*"]. Empty: any.',
    )
    is_active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    budget_usd = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="USD the key may spend per budget period; a submit once it is spent is a 402. "
        "Empty: no budget.",
    )
    budget_period = models.CharField(
        max_length=8,
        choices=BudgetPeriod.choices,
        default=BudgetPeriod.MONTHLY,
        db_default=BudgetPeriod.MONTHLY,  # keys written by a version without budgets stay valid
    )

    # Checked at submit (jobs/limits.py); empty: no limit.
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Submits accepted per clock minute (UTC). Empty: no limit.",
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Tokens (prompt + completion) the key's finished jobs may use per clock "
        "minute before submits are refused until the next minute. Empty: no limit.",
    )
    max_pending = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Jobs the key may have pending or processing at once. Empty: no limit.",
    )
    # Read by the workers' claim (jobs/sql.py), never at submit.
    share = models.PositiveIntegerField(
        default=1,
        db_default=1,  # keys written by a version without shares stay valid
        validators=[MinValueValidator(MIN_SHARE), MaxValueValidator(MAX_SHARE)],
        help_text=f"The key's weight when workers are shared between keys with jobs waiting: "
        f"a key with share 3 gets about three times the workers of a key with share 1. "
        f"{MIN_SHARE} to {MAX_SHARE}.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            # The claim divides by it.
            models.CheckConstraint(
                condition=models.Q(share__gte=MIN_SHARE, share__lte=MAX_SHARE),
                name="virtual_key_share_range",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def create_with_key(cls, **fields: object) -> tuple[VirtualKey, str]:
        """Create a key and return it with its raw value, which is never stored or shown again."""
        raw = generate_key()
        key = cls.objects.create(prefix=display_prefix(raw), key_hash=hash_key(raw), **fields)
        return key, raw

    @property
    def is_usable(self) -> bool:
        return self.is_active and (self.expires_at is None or self.expires_at > timezone.now())

    def allows(self, model: str) -> bool:
        if not self.allowed_models:
            return True
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.allowed_models)

    @property
    def has_limits(self) -> bool:
        """Whether any of the key's request, token or pending limits is set."""
        return (
            self.requests_per_minute is not None
            or self.tokens_per_minute is not None
            or self.max_pending is not None
        )

    @property
    def is_counted(self) -> bool:
        """Whether submits with this key pass its counters row (jobs/limits.py): it has limits
        or a budget."""
        return self.has_limits or self.budget_usd is not None


class RevokedToken(models.Model):
    """A JWT refused before it expires: one token, by its ``jti``; or, in the one row whose jti
    is ``ALL_BEFORE``, every token issued (``iat``) before ``issued_before``.

    A row is needed only while a token it matches could still be accepted: until that token's
    ``exp``, or, when that is unknown, for the longest lifetime a token may have. Beat then
    deletes it (``expires_at``).
    """

    ALL_BEFORE = "*"

    jti = models.CharField(max_length=255, unique=True)
    issued_before = models.DateTimeField(
        null=True, blank=True, help_text="Only on the all-before row: tokens issued before this."
    )
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-revoked_at"]

    def __str__(self) -> str:
        if self.jti == self.ALL_BEFORE:
            return f"every token issued before {self.issued_before:%Y-%m-%d %H:%M:%S}"
        return f"token {self.jti}"


class KeySpend(models.Model):
    """What one key spent on one model in one UTC day: the ledger budgets are checked against.

    Written once per finished job, in the transaction that writes the job's terminal state
    (``jobs.charges``), so a job is counted exactly once; a budget period's spend is the sum of
    its days, so changing a key's period never loses what it spent. Rows outlive the jobs they
    count (nothing here points at a job) and go when their key is deleted.
    """

    virtual_key = models.ForeignKey(
        VirtualKey,
        on_delete=models.CASCADE,
        related_name="spend",
        db_index=False,  # the unique constraint's index starts with it
    )
    day = models.DateField(help_text="The UTC day the jobs finished on.")
    model = models.CharField(max_length=401, help_text='"provider/model" that served the jobs.')
    spend_usd = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))
    requests = models.PositiveIntegerField(default=0, help_text="Completed jobs charged.")
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    unpriced_requests = models.PositiveIntegerField(
        default=0, help_text="Jobs charged 0 because no price was known for the model."
    )

    class Meta:
        ordering = ["-day", "model"]
        verbose_name = "key spend"
        verbose_name_plural = "key spend"
        constraints = [
            models.UniqueConstraint(
                fields=["virtual_key", "day", "model"], name="key_spend_per_day_and_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.virtual_key_id} {self.day} {self.model}"
