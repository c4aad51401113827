"""Celery tasks: a few lines each, the work is in pool.services."""

from celery import shared_task
from django.db import transaction

from pool import services
from pool.models import Container


def queue_spawns(containers):
    for container in containers:
        transaction.on_commit(lambda pk=container.pk: spawn_container.delay(pk))


@shared_task
def heartbeat():
    queue_spawns(services.heartbeat())


@shared_task
def cull():
    services.cull_sessions()


@shared_task
def sample_usage():
    services.take_usage_sample()


@shared_task
def apply_schedules():
    services.apply_due_schedules()


@shared_task
def fill_pool(pool_id):
    queue_spawns(services.fill_pool(pool_id))


@shared_task
def spawn_container(container_id):
    services.spawn_container(container_id)


@shared_task
def finish_retirement(container_id):
    services.finish_retirement(Container.objects.select_related("pool").get(pk=container_id))
