"""Pools: made from settings, resized, filled, shrunk and drained."""

import logging
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypedDict, TypeVar, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from pool.models import Container, Event, Pool, Schedule, Workshop, WorkshopPool
from pool.services.ending import request_refill, retire_container
from pool.services.events import record_event

log = logging.getLogger(__name__)

MAX_BACKOFF = 300  # seconds: even a long-broken pool retries every five minutes


class PoolError(Exception):
    """A request the pool cannot carry out, with a message for people."""


class PoolStats(TypedDict):
    available: int
    capacity: int
    in_use: int
    starting: int
    container_image: str


def init_default_pool() -> tuple[Pool, bool]:
    """Create the default pool from settings, or write the pool options that
    are set explicitly in the environment onto the existing one."""
    values = dict(settings.TMPNB_DEFAULT_POOL)
    name = values.pop("name")
    pool, created = Pool.objects.get_or_create(name=name, defaults=values)
    if not created and settings.TMPNB_POOL_FROM_ENVIRONMENT:
        for field in settings.TMPNB_POOL_FROM_ENVIRONMENT:
            setattr(pool, field, values[field])
        pool.full_clean()
        pool.save()
    return pool, created


def get_default_pool() -> Pool:
    return pool_named(settings.TMPNB_DEFAULT_POOL["name"]) or init_default_pool()[0]


POOL_LOOKUP_SECONDS = 1.0
_recent: dict[tuple[str, str | int], tuple[Any, float]] = {}  # key -> (what was read, monotonic time until which it is used)
T = TypeVar("T")


def pool_named(name: str) -> Pool | None:
    """The pool called ``name``, or None. A burst asks for its pool on every
    request and pools change rarely, so each process reads it at most once a
    second; a change saved in this process is seen at once."""
    return read_recently(("name", name), lambda: Pool.objects.filter(name=name).first())


def pool_with_id(pk: int) -> Pool | None:
    """The pool ``pk``, or None, read as pool_named reads it: the waiting
    room asks for its visitors' pool at every status request."""
    return read_recently(("id", pk), lambda: Pool.objects.filter(pk=pk).first())


def read_recently(key: tuple[str, str | int], read: Callable[[], T]) -> T:
    """What ``read`` gave for ``key`` in this process at most
    POOL_LOOKUP_SECONDS ago, or ``read()`` now (None is not remembered).
    Whatever is remembered is forgotten once a pool or a workshop is saved here."""
    cached, until = _recent.get(key, (None, 0.0))
    if until > time.monotonic():
        return cast(T, cached)
    value = read()
    if value is not None:
        _recent[key] = (value, time.monotonic() + POOL_LOOKUP_SECONDS)
    return value


@receiver([post_save, post_delete], sender=Pool)
@receiver([post_save, post_delete], sender=Workshop)
@receiver([post_save, post_delete], sender=WorkshopPool)
def forget_pools(**kwargs: Any) -> None:
    _recent.clear()


def resize_pool(pool: Pool, capacity: int, *, ready_target: int | None = None, by: str = "", schedule: Schedule | None = None) -> Pool:
    """Store a new capacity; the next heartbeat spawns or shrinks to it.
    ``by`` names who asked, and ``schedule`` the planned change being applied,
    for the event log."""
    if capacity < 0:
        raise PoolError("the pool size cannot be negative")
    if ready_target is not None and ready_target < 0:
        raise PoolError("the ready target cannot be negative")
    # From the row, not the instance: the admin hands in an instance its form already changed.
    before = Pool.objects.values_list("capacity", "ready_target").get(pk=pool.pk)
    pool.capacity = capacity
    if ready_target is not None or (pool.ready_target or 0) > capacity:
        pool.ready_target = min(ready_target if ready_target is not None else capacity, capacity)
    with transaction.atomic():
        pool.save(update_fields=["capacity", "ready_target", "updated_at"])
        message = f"pool {pool.name}: size {pool.capacity}, ready target {pool.effective_ready_target}"
        numbers: dict[str, Any] = {"capacity": [before[0], pool.capacity], "ready_target": [before[1], pool.ready_target]}
        if schedule is None:
            record_event(Event.Kind.RESIZE, message, pool=pool, actor=by, **numbers)
        else:
            record_event(
                Event.Kind.SCHEDULE,
                f"{message} (planned for {schedule.at.isoformat()})",
                pool=pool,
                actor=by,
                schedule=schedule.pk,
                at=schedule.at.isoformat(),
                **numbers,
            )
    return pool


def fill_pool(pool_id: int) -> list[Container]:
    """Add rows for the containers the pool lacks and return them, to be spawned.

    The count is read first without a lock, so the many fills a burst of
    assignments queues cost no write lock when nothing is missing; only then
    is the pool row locked (IMMEDIATE transactions serialize this on SQLite)
    and the count taken again, so two concurrent fills never both add the
    same missing containers.
    """
    if _missing(Pool.objects.get(pk=pool_id)) <= 0:
        return []
    with transaction.atomic():
        pool = Pool.objects.select_for_update().get(pk=pool_id)
        return [_new_container(pool) for _ in range(max(_missing(pool), 0))]


def _missing(pool: Pool) -> int:
    if pool.spawning_blocked(timezone.now()) or pool.awaiting_materials:
        return 0
    live = pool.containers.live()
    unclaimed = live.filter(state__in=[Container.State.SPAWNING, Container.State.READY]).count()
    # Visitors in the queue get containers of their own, on top of the ready target.
    wanted = pool.effective_ready_target + pool.queue.waiting().count()
    return min(pool.capacity - live.count(), wanted - unclaimed)


def _new_container(pool: Pool) -> Container:
    path_id = secrets.token_hex(pool.user_length)[: pool.user_length]
    return Container.objects.create(
        pool=pool,
        name=f"tmpnb-{settings.TMPNB_INSTALLATION}-{pool.name}-{path_id}",
        path_id=path_id,
        token=secrets.token_urlsafe(24) if pool.use_tokens else "",
        host_ip=pool.container_ip,
    )


def record_spawn_failure(pool_id: int, error: Exception | str) -> None:
    """Back off exponentially after each failed spawn, and pause the pool after
    TMPNB_SPAWN_FAILURES_TO_PAUSE in a row: a broken image must not spin."""
    with transaction.atomic():
        pool = Pool.objects.select_for_update().get(pk=pool_id)
        pool.failure_streak += 1
        delay = min(settings.TMPNB_SPAWN_BACKOFF * 2 ** (pool.failure_streak - 1), MAX_BACKOFF)
        pool.next_spawn_at = timezone.now() + timedelta(seconds=delay)
        if pool.failure_streak >= settings.TMPNB_SPAWN_FAILURES_TO_PAUSE and not pool.paused_reason:
            pool.paused_reason = f"paused after {pool.failure_streak} failed spawns in a row; the last: {error}"
            log.error("pool %s: %s", pool.name, pool.paused_reason)
        pool.save(update_fields=["failure_streak", "next_spawn_at", "paused_reason"])


def record_spawn_success(pool_id: int) -> None:
    Pool.objects.filter(pk=pool_id, failure_streak__gt=0).update(failure_streak=0, next_spawn_at=None)


def resume_spawning(pool: Pool) -> None:
    """The organiser fixed the cause: spawn again at once."""
    Pool.objects.filter(pk=pool.pk).update(failure_streak=0, next_spawn_at=None, paused_reason="")
    request_refill(pool.pk)


def shrink_pool(pool_id: int) -> int:
    """Remove ready containers above the pool's capacity or ready target;
    containers in use are never taken away."""
    pool = Pool.objects.get(pk=pool_id)
    live = pool.containers.live().count()
    ready = pool.containers.ready()
    excess = max(live - pool.capacity, ready.count() - pool.effective_ready_target, 0)
    victims = list(ready.order_by("-created_at")[:excess])
    if victims:
        log.info(
            "pool %s: %d live for %d places, %d ready for a target of %d: removing %d ready",
            pool.name,
            live,
            pool.capacity,
            ready.count(),
            pool.effective_ready_target,
            len(victims),
        )
    return sum(retire_container(c, "", only_from=[Container.State.READY], refill=False) for c in victims)


def drain_pool(pool: Pool, *, by: str = "") -> int:
    """Replace every container not yet handed out (after the image changed, say);
    assigned containers keep running. ``by`` names who asked, for the event log."""
    waiting = list(pool.containers.filter(state__in=[Container.State.SPAWNING, Container.State.READY]))
    drained = sum(retire_container(c, "", only_from=[Container.State.SPAWNING, Container.State.READY], refill=False) for c in waiting)
    record_event(Event.Kind.DRAIN, f"pool {pool.name}: replacing {drained} container(s)", pool=pool, actor=by, replaced=drained)
    request_refill(pool.pk)
    return drained


def keep_pools_filled() -> list[Container]:
    """Every pool shrunk or filled to its numbers. Returns the new rows to spawn."""
    to_spawn: list[Container] = []
    for pool_id in Pool.objects.values_list("pk", flat=True):
        shrink_pool(pool_id)
        to_spawn.extend(fill_pool(pool_id))
    return to_spawn


def pool_stats(pool: Pool) -> PoolStats:
    counts = dict(pool.containers.live().values_list("state").annotate(n=Count("pk")))
    return {
        "available": counts.get(Container.State.READY, 0),
        "capacity": pool.capacity,
        "in_use": counts.get(Container.State.ASSIGNED, 0),
        "starting": counts.get(Container.State.SPAWNING, 0),
        "container_image": pool.image,
    }
