"""Pool sizes planned ahead (60 at 09:45, 5 at 17:30), applied by beat on time."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from pool.models import Pool, Schedule
from pool.services.pools import resize_pool

ACTOR = "schedule"


def apply_due_schedules(now: datetime | None = None) -> list[Schedule]:
    """Apply, oldest first, each schedule whose time has come and that was not
    applied yet; return those this call applied.

    Each row is claimed with a conditional update that only one caller can
    win, in the same transaction as the resize, so two beats (or a beat and
    the one restarted after it) never apply a schedule twice, and a resize
    that fails leaves the schedule to be tried again.
    """
    now = now or timezone.now()
    applied = []
    for schedule in Schedule.objects.due(now).order_by("at", "pk"):
        with transaction.atomic():
            if not Schedule.objects.filter(pk=schedule.pk, applied_at__isnull=True).update(applied_at=now):
                continue  # another beat got there first
            # Loaded now: an earlier schedule in this loop may have resized the same pool.
            pool = Pool.objects.get(pk=schedule.pool_id)
            resize_pool(pool, schedule.capacity, ready_target=schedule.ready_target, by=ACTOR, schedule=schedule)
        applied.append(schedule)
    return applied
