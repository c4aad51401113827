# Issue 17: the field holds a Swarm service's id too. RenameField renames the
# column in place, so an existing database keeps every value.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('pool', '0006_history_totals'),
    ]

    operations = [
        migrations.RenameField(
            model_name='container',
            old_name='docker_id',
            new_name='backend_id',
        ),
    ]
