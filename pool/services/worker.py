"""Work handed to the Celery worker, sent by task name.

The tasks (pool/tasks.py) call the services, so the services never import the
tasks: they send a task by the name it is registered under, and pool/tasks.py
registers each task under its name here. Celery's ``send_task`` applies the
routing of that name (CELERY_TASK_ROUTES) and, in the worker, the task's own
options, as ``task.delay`` would.
"""

from typing import Any

from celery import current_app
from django.db import transaction

# The names the tasks were first registered under: messages already queued in
# Redis and the beat schedule (tmpnb_site/celery.py) reach them after an upgrade.
HEARTBEAT = "pool.tasks.heartbeat"
CULL = "pool.tasks.cull"
CHECK_DISK = "pool.tasks.check_disk"
SAMPLE_USAGE = "pool.tasks.sample_usage"
APPLY_SCHEDULES = "pool.tasks.apply_schedules"
PREPARE_MATERIALS = "pool.tasks.prepare_materials"
FILL_POOL = "pool.tasks.fill_pool"
SPAWN_CONTAINER = "pool.tasks.spawn_container"
FINISH_RETIREMENT = "pool.tasks.finish_retirement"
RESTORE_WORK = "pool.tasks.restore_work"
COLLECT_WORK = "pool.tasks.collect_work"
HAND_OUT_BROADCAST = "pool.tasks.hand_out_broadcast"
ADVANCE_WORKSHOPS = "pool.tasks.advance_workshops"


def send(task: str, *args: Any, countdown: float | None = None, **kwargs: Any) -> None:
    """Queue ``task`` now (after ``countdown`` seconds, if given). Raises what
    the broker raises when it cannot take it."""
    current_app.send_task(task, args=args, kwargs=kwargs, countdown=countdown)


def send_on_commit(task: str, *args: Any, **kwargs: Any) -> None:
    """Queue ``task`` once the current transaction commits, so the worker
    never reads a row that is not written yet."""
    transaction.on_commit(lambda: send(task, *args, **kwargs))
