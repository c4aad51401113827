# A workshop runs on one pool or several, each with its own headcount
# (WorkshopPool); each existing workshop keeps its one pool and headcount.

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


def seat_each_workshop(apps, schema_editor):
    Workshop = apps.get_model("pool", "Workshop")
    WorkshopPool = apps.get_model("pool", "WorkshopPool")
    WorkshopPool.objects.bulk_create(
        WorkshopPool(workshop_id=workshop_id, pool_id=pool_id, headcount=headcount)
        for workshop_id, pool_id, headcount in Workshop.objects.values_list("pk", "pool_id", "headcount")
    )


def unseat_each_workshop(apps, schema_editor):
    """Back to one pool a workshop: its first pool, with the headcount of all."""
    Workshop = apps.get_model("pool", "Workshop")
    WorkshopPool = apps.get_model("pool", "WorkshopPool")
    for workshop in Workshop.objects.all():
        seats = list(WorkshopPool.objects.filter(workshop=workshop).order_by("pk"))
        if seats:
            Workshop.objects.filter(pk=workshop.pk).update(pool_id=seats[0].pool_id, headcount=sum(seat.headcount for seat in seats))


class Migration(migrations.Migration):

    dependencies = [
        ("pool", "0028_workshop_events"),
    ]

    operations = [
        migrations.CreateModel(
            name="WorkshopPool",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("headcount", models.PositiveIntegerField(help_text="Participants expected on this pool.", validators=[django.core.validators.MinValueValidator(1)])),
                ("pool", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="workshop_seats", to="pool.pool")),
                ("workshop", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="seats", to="pool.workshop")),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("workshop", "pool"), name="one_headcount_per_pool_of_a_workshop")],
            },
        ),
        # Nullable for the way back: unseat_each_workshop fills them again.
        migrations.AlterField(
            model_name="workshop",
            name="pool",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="pool.pool"),
        ),
        migrations.AlterField(
            model_name="workshop",
            name="headcount",
            field=models.PositiveIntegerField(null=True),
        ),
        migrations.RunPython(seat_each_workshop, unseat_each_workshop),
        migrations.RemoveField(model_name="workshop", name="pool"),
        migrations.RemoveField(model_name="workshop", name="headcount"),
        migrations.AddField(
            model_name="workshop",
            name="pools",
            field=models.ManyToManyField(related_name="workshops", through="pool.WorkshopPool", to="pool.pool"),
        ),
        migrations.AddField(
            model_name="collection",
            name="workshop",
            field=models.ForeignKey(
                blank=True,
                help_text="Set: it holds every pool of this workshop, not only its pool.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="pool.workshop",
            ),
        ),
    ]
