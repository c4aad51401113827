"""Celery tasks: a few lines each, the work is in pool.services.

Each task is registered under its name in pool.services.worker, the name it
had before the functions were named as tasks, so messages already queued in
Redis and the beat schedule (tmpnb_site/celery.py) still reach it after an
upgrade; the services send tasks by those names.
"""

from collections.abc import Iterable

from celery import shared_task

from pool.models import Container
from pool.services import broadcasts, collecting, disk, ending, materials, pools, schedules, snapshots, spawning, upkeep, usage, worker, workshops


def queue_spawns(containers: Iterable[Container]) -> None:
    for container in containers:
        worker.send_on_commit(worker.SPAWN_CONTAINER, container.pk)


@shared_task(name=worker.HEARTBEAT)
def heartbeat_task() -> None:
    queue_spawns(upkeep.heartbeat())
    for pool_id in materials.pools_with_materials_to_prepare():
        worker.send_on_commit(worker.PREPARE_MATERIALS, pool_id)


@shared_task(name=worker.PREPARE_MATERIALS)
def prepare_materials_task(pool_id: int) -> None:
    materials.prepare_materials(pool_id)


@shared_task(name=worker.CULL)
def cull_task() -> None:
    upkeep.cull_sessions()


@shared_task(name=worker.CHECK_DISK)
def check_disk_task() -> None:
    disk.check_disk()


@shared_task(name=worker.SAMPLE_USAGE)
def sample_usage_task() -> None:
    usage.take_usage_sample()


@shared_task(name=worker.APPLY_SCHEDULES)
def apply_schedules_task() -> None:
    schedules.apply_due_schedules()


@shared_task(name=worker.ADVANCE_WORKSHOPS)
def advance_workshops_task() -> None:
    workshops.advance_workshops()


@shared_task(name=worker.FILL_POOL)
def fill_pool_task(pool_id: int) -> None:
    queue_spawns(pools.fill_pool(pool_id))


@shared_task(name=worker.SPAWN_CONTAINER)
def spawn_container_task(container_id: int) -> None:
    spawning.spawn_container(container_id)


@shared_task(name=worker.FINISH_RETIREMENT)
def finish_retirement_task(container_id: int, files_left: bool = True) -> None:
    ending.finish_retirement(Container.objects.select_related("pool").get(pk=container_id), files_left=files_left)


@shared_task(name=worker.RESTORE_WORK)
def restore_work_task(snapshot_id: int, container_id: int, in_use: bool) -> None:
    snapshots.restore_queued_work(snapshot_id=snapshot_id, container_id=container_id, in_use=in_use)


@shared_task(name=worker.COLLECT_WORK)
def collect_work_task(collection_id: int) -> None:
    collecting.collect_work(collection_id)


@shared_task(name=worker.HAND_OUT_BROADCAST)
def hand_out_broadcast_task(broadcast_id: int) -> None:
    broadcasts.hand_out(broadcast_id)
