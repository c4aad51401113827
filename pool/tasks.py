"""Celery tasks: a few lines each, the work is in pool.services."""

from celery import shared_task
from django.db import transaction

from pool import services


def queue_spawns(containers):
    for container in containers:
        transaction.on_commit(lambda pk=container.pk: spawn_container.delay(pk))


@shared_task
def heartbeat():
    queue_spawns(services.heartbeat())
    for pool_id in services.pools_with_materials_to_prepare():
        transaction.on_commit(lambda pk=pool_id: prepare_materials.delay(pk))


@shared_task
def prepare_materials(pool_id):
    services.prepare_materials(pool_id)


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
