from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pool", "0016_snapshot_restore_asked_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="snapshot",
            name="lease_until",
            field=models.DateTimeField(blank=True, help_text="A copy in progress renews this; past it, its worker is taken for dead.", null=True),
        ),
    ]
