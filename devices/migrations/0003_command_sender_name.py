from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def name_the_senders(apps, schema_editor):
    """Commands sent before the field existed get their sender's current username."""
    Command = apps.get_model("devices", "Command")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    usernames = User.objects.filter(pk=OuterRef("created_by_id")).values("username")
    Command.objects.filter(created_by__isnull=False).update(created_by_name=Subquery(usernames[:1]))


class Migration(migrations.Migration):

    dependencies = [
        ("devices", "0002_broker_credentials"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="command",
            name="created_by_name",
            field=models.CharField(
                blank=True, editable=False, verbose_name="sent by", help_text="The sender's username, kept when the user is deleted.", max_length=150
            ),
        ),
        migrations.RunPython(name_the_senders, migrations.RunPython.noop),
    ]
