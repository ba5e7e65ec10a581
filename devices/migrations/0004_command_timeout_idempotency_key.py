from datetime import timedelta

from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

import devices.models


def give_sent_commands_a_deadline(apps, schema_editor):
    """Commands sent before and still unanswered would otherwise stay `sent` forever."""
    Command = apps.get_model("devices", "Command")
    for command in Command.objects.filter(status="sent"):
        command.answer_by = (command.sent_at or timezone.now()) + timedelta(seconds=command.timeout)
        command.save(update_fields=["answer_by"])


class Migration(migrations.Migration):

    dependencies = [
        ("devices", "0003_command_sender_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="command",
            name="timeout",
            field=models.PositiveIntegerField(
                default=devices.models.default_command_timeout,
                help_text="Seconds a sent command waits for its device's answer.",
            ),
        ),
        migrations.AddField(
            model_name="command",
            name="answer_by",
            field=models.DateTimeField(blank=True, null=True, help_text="Sent and unanswered by then: expired."),
        ),
        migrations.AddIndex(
            model_name="command",
            index=models.Index(fields=["status", "answer_by"], name="devices_com_status_1c9611_idx"),
        ),
        migrations.RunPython(give_sent_commands_a_deadline, migrations.RunPython.noop),
        migrations.CreateModel(
            name="IdempotencyKey",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.CharField(max_length=255)),
                (
                    "fingerprint",
                    models.CharField(
                        max_length=64, help_text="What the request asked for (devices.commands.request_fingerprint)."
                    ),
                ),
                ("created", models.DateTimeField(db_index=True, default=timezone.now)),
                (
                    "command",
                    models.ForeignKey(on_delete=models.deletion.CASCADE, related_name="+", to="devices.command"),
                ),
                (
                    "user",
                    models.ForeignKey(on_delete=models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("user", "key"), name="one_command_per_user_and_key")],
            },
        ),
    ]
