from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pool", "0023_session_hand_and_name"),
    ]

    operations = [
        migrations.AddField(
            model_name="queueentry",
            name="display_name",
            field=models.CharField(blank=True, help_text="The name they typed while waiting, if any: their session takes it.", max_length=60),
        ),
    ]
