from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0002_pending_queue_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="asyncjob",
            name="request_type",
            field=models.CharField(
                choices=[
                    ("text_completion", "Text Completion"),
                    ("chat_completion", "Chat Completion"),
                    ("responses", "Responses"),
                    ("embedding", "Embedding"),
                ],
                max_length=32,
            ),
        ),
    ]
