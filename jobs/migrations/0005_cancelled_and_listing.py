from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_idempotency"),
    ]

    operations = [
        migrations.AlterField(
            model_name="asyncjob",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("processing", "Processing"),
                    ("completed", "Completed"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                ],
                default="pending",
                max_length=16,
            ),
        ),
        # (virtual_key, -created_at, -id) serves everything the old (virtual_key, -created_at)
        # index did, and the list's order and cursor besides.
        migrations.RemoveIndex(model_name="asyncjob", name="job_key_created_idx"),
        migrations.AddIndex(
            model_name="asyncjob",
            index=models.Index(
                fields=["virtual_key", "-created_at", "-id"], name="job_key_list_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="asyncjob",
            index=models.Index(fields=["-created_at", "-id"], name="job_list_idx"),
        ),
    ]
