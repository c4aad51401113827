"""Celery tasks: a few lines each, the work is in pool.services.

Each task keeps the name it was registered under before the functions were
named as tasks (``name=``), so messages already queued in Redis and the beat
schedule (tmpnb_site/celery.py) still reach it after an upgrade.
"""

from celery import shared_task
from django.db import transaction

from pool.models import Container
from pool.services import disk, ending, materials, pools, schedules, snapshots, spawning, upkeep, usage


def queue_spawns(containers):
    for container in containers:
        transaction.on_commit(lambda pk=container.pk: spawn_container_task.delay(pk))


@shared_task(name="pool.tasks.heartbeat")
def heartbeat_task():
    queue_spawns(upkeep.heartbeat())
    for pool_id in materials.pools_with_materials_to_prepare():
        transaction.on_commit(lambda pk=pool_id: prepare_materials_task.delay(pk))


@shared_task(name="pool.tasks.prepare_materials")
def prepare_materials_task(pool_id):
    materials.prepare_materials(pool_id)


@shared_task(name="pool.tasks.cull")
def cull_task():
    upkeep.cull_sessions()


@shared_task(name="pool.tasks.check_disk")
def check_disk_task():
    disk.check_disk()


@shared_task(name="pool.tasks.sample_usage")
def sample_usage_task():
    usage.take_usage_sample()


@shared_task(name="pool.tasks.apply_schedules")
def apply_schedules_task():
    schedules.apply_due_schedules()


@shared_task(name="pool.tasks.fill_pool")
def fill_pool_task(pool_id):
    queue_spawns(pools.fill_pool(pool_id))


@shared_task(name="pool.tasks.spawn_container")
def spawn_container_task(container_id):
    spawning.spawn_container(container_id)


@shared_task(name="pool.tasks.finish_retirement")
def finish_retirement_task(container_id, files_left=True):
    ending.finish_retirement(Container.objects.select_related("pool").get(pk=container_id), files_left=files_left)


@shared_task(name="pool.tasks.restore_work")
def restore_work_task(snapshot_id, container_id, in_use):
    snapshots.restore_queued_work(snapshot_id=snapshot_id, container_id=container_id, in_use=in_use)
