import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0002_revoked_jwt_tokens"),
        ("jobs", "0003_request_types"),
    ]

    operations = [
        migrations.CreateModel(
            name="IdempotencyKey",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "key",
                    models.CharField(help_text="The header's value, unquoted.", max_length=255),
                ),
                (
                    "fingerprint",
                    models.CharField(
                        help_text="SHA-256 of the request type, the result TTL and the body's canonical JSON.",
                        max_length=64,
                    ),
                ),
                (
                    "created_at",
                    models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
                (
                    "job",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        help_text="The job the first submit made; it may have been purged since.",
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="jobs.asyncjob",
                    ),
                ),
                (
                    "virtual_key",
                    models.ForeignKey(
                        blank=True,
                        db_index=False,
                        help_text="The key the submit came with; empty for an admin JWT (one scope for all).",
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="gateway.virtualkey",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["created_at"], name="idempotency_created_idx")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("virtual_key__isnull", False)),
                        fields=("virtual_key", "key"),
                        name="idempotency_key_per_virtual_key",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("virtual_key__isnull", True)),
                        fields=("key",),
                        name="idempotency_key_per_admin",
                    ),
                ],
            },
        ),
    ]
