"""The disk a notebook may fill: TMPNB_DISK_LIMIT bytes written.

Docker cannot cap a container's writable layer here (``--storage-opt size``
needs overlay2 on xfs with project quotas; this engine's is on ext4), so a
periodic check (every TMPNB_DISK_PERIOD) asks the backend what each held
notebook has written, in one call. Past DISK_WARN_SHARE of the limit its
participant is warned (the banner, which asks pool/views.py's
notebook_time_left); past the limit the session ends as a cull does, with the
work saved within TMPNB_SNAPSHOT_MAX_MB, and the container, whose layer holds
what filled the disk, is removed. A file written in one go fills the disk
until the next check: the check frees it, it cannot prevent it.
"""

import logging
from typing import TypedDict

from django.conf import settings

from pool.backends import get_backend
from pool.backends.base import BackendError
from pool.models import Container, Event, Session
from pool.services.ending import retire_and_record
from pool.services.events import record_event

log = logging.getLogger(__name__)

DISK_WARN_SHARE = 0.8  # of TMPNB_DISK_LIMIT: from here on, the participant is warned


class DiskReport(TypedDict):
    warned: int
    ended: int


def nearly_full(used: int | None, limit: int | None) -> bool:
    return limit is not None and used is not None and used >= DISK_WARN_SHARE * limit


def saved_since_landing(container: Container) -> int | None:
    """Bytes the participant of ``container`` has written since they landed,
    at the last disk check; None before the first check that saw it held."""
    if container.disk_used is None or container.disk_at_landing is None:
        return None
    return max(0, container.disk_used - container.disk_at_landing)


def size_text(size: int) -> str:
    """Bytes as people read them: 150 MB, 2 GB, 2.5 GB."""
    if size >= 1024**3:
        return f"{size / 1024**3:.1f}".removesuffix(".0") + " GB"
    return f"{round(size / 1024**2)} MB"


def check_disk() -> DiskReport:
    """Measure what every held notebook has written; warn the ones nearing
    TMPNB_DISK_LIMIT (once) and end the ones past it. Ready notebooks are
    measured too, so that the first check after a landing knows what the
    notebook held before it (its materials, its server's start): the room
    view shows what the participant saved since (saved_since_landing)."""
    report = DiskReport(warned=0, ended=0)
    limit = settings.TMPNB_DISK_LIMIT
    if not limit:
        return report
    try:
        usage = get_backend().disk_usage()
    except BackendError as error:
        log.warning("disk check skipped: %s", error)
        return report
    measured = []
    for container in Container.objects.filter(state__in=[Container.State.READY, Container.State.ASSIGNED]).select_related("pool"):
        used = usage.get(container.name)
        if used is None:
            continue
        before, container.disk_used = container.disk_used, used
        if container.state == Container.State.ASSIGNED and container.disk_at_landing is None:
            container.disk_at_landing = used if before is None else before
            measured.append(container)
        elif used != before:
            measured.append(container)
        if container.state != Container.State.ASSIGNED:
            continue  # measured only for its baseline: what a notebook held ready has written is not its participant's
        if used > limit:
            report["ended"] += _end(container, used, limit)
        elif nearly_full(used, limit) and not nearly_full(before, limit):
            session = Session.objects.active().filter(container=container).first()
            message = f"{container.name} warned: {size_text(used)} written of TMPNB_DISK_LIMIT ({size_text(limit)})"
            record_event(Event.Kind.DISK, message, container=container, session=session, used=used, limit=limit)
            report["warned"] += 1
    Container.objects.bulk_update(measured, ["disk_used", "disk_at_landing"], batch_size=500)
    return report


def _end(container: Container, used: int, limit: int) -> bool:
    return retire_and_record(
        container,
        Session.EndReason.DISK_FULL,
        kind=Event.Kind.DISK,
        message=f"{container.name} ended: {size_text(used)} written, over TMPNB_DISK_LIMIT ({size_text(limit)})",
        only_from=[Container.State.ASSIGNED],
        used=used,
        limit=limit,
    )
