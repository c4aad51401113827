"""The rules of the pool: spawn, assign, end and keep it filled.

Views, admin actions, management commands and Celery tasks are thin edges over
these functions. The database is the record; Docker and the proxy follow it.
"""

import logging
import secrets
import time

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from pool import dockerapi
from pool.command import render_command
from pool.models import Container, Pool, Session
from proxyapi import ProxyError, get_proxy

log = logging.getLogger(__name__)

PATH_ID_BYTES = 6  # 12 hex characters: unguessable enough, short enough to read


class PoolError(Exception):
    """A request the pool cannot carry out, with a message for people."""


# --- pools ------------------------------------------------------------------


def init_default_pool():
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


def get_default_pool():
    name = settings.TMPNB_DEFAULT_POOL["name"]
    pool = Pool.objects.filter(name=name).first()
    return pool or init_default_pool()[0]


def resize_pool(pool, capacity, ready_target=None):
    """Store a new capacity; the next heartbeat spawns or shrinks to it."""
    if capacity < 0:
        raise PoolError("the pool size cannot be negative")
    if ready_target is not None and ready_target < 0:
        raise PoolError("the ready target cannot be negative")
    pool.capacity = capacity
    if ready_target is not None or (pool.ready_target or 0) > capacity:
        pool.ready_target = min(ready_target if ready_target is not None else capacity, capacity)
    pool.save(update_fields=["capacity", "ready_target", "updated_at"])
    return pool


def fill_pool(pool_id):
    """Add rows for the containers the pool lacks and return them, to be spawned.

    The pool row is locked (IMMEDIATE transactions serialize this on SQLite)
    so two concurrent fills never both add the same missing containers.
    """
    with transaction.atomic():
        pool = Pool.objects.select_for_update().get(pk=pool_id)
        live = pool.containers.live()
        waiting = live.filter(state__in=[Container.State.SPAWNING, Container.State.READY]).count()
        missing = min(pool.capacity - live.count(), pool.effective_ready_target - waiting)
        return [_new_container(pool) for _ in range(max(missing, 0))]


def shrink_pool(pool_id):
    """Remove ready containers above the pool's capacity or ready target."""
    pool = Pool.objects.get(pk=pool_id)
    live = pool.containers.live().count()
    ready = pool.containers.ready()
    excess = max(live - pool.capacity, ready.count() - pool.effective_ready_target, 0)
    removed = 0
    for container in ready.order_by("-created_at")[:excess]:
        if Container.objects.filter(pk=container.pk, state=Container.State.READY).update(state=Container.State.STOPPING):
            _tear_down(container)
            removed += 1
    return removed


def keep_pools_filled():
    """The heartbeat's work: every pool shrunk or filled to its numbers.
    Returns the new rows to spawn."""
    to_spawn = []
    for pool_id in Pool.objects.values_list("pk", flat=True):
        shrink_pool(pool_id)
        to_spawn.extend(fill_pool(pool_id))
    return to_spawn


def _new_container(pool):
    path_id = secrets.token_hex(PATH_ID_BYTES)
    return Container.objects.create(
        pool=pool,
        name=f"tmpnb-{settings.TMPNB_INSTALLATION}-{pool.name}-{path_id}",
        path_id=path_id,
        token=secrets.token_urlsafe(24),
        host_ip=pool.container_ip,
    )


def request_refill(pool_id):
    """Queue a fill of the pool once the current transaction commits, so a
    place taken or freed is refilled now rather than at the next heartbeat."""
    from pool.tasks import fill_pool  # the tasks module imports this one

    def queue():
        try:
            fill_pool.delay(pool_id)
        except Exception as error:  # the broker is down: the heartbeat refills later
            log.warning("could not queue a refill of pool %s: %s", pool_id, error)

    transaction.on_commit(queue)


# --- spawning ---------------------------------------------------------------


def container_spec(container):
    pool = container.pool
    command = render_command(
        pool.command, base_path=container.base_path, port=pool.container_port, ip="0.0.0.0", token=container.token
    )
    return dockerapi.ContainerSpec(
        name=container.name,
        image=pool.image,
        command=command,
        pool=pool.name,
        container_port=pool.container_port,
        host_ip=pool.container_ip,
        mem_limit=pool.mem_limit,
        cpu_shares=pool.cpu_shares,
    )


def spawn_container(container_id):
    """Start the container of a spawning row, wait until its server answers
    under its base path, route it, and mark it ready."""
    container = Container.objects.select_related("pool").get(pk=container_id)
    if container.state != Container.State.SPAWNING:
        return container
    try:
        started = dockerapi.start_container(container_spec(container))
        container.mark_started(started.docker_id, started.host_ip, started.host_port)
        wait_until_answering(container, settings.TMPNB_SPAWN_TIMEOUT)
        get_proxy().add_route(container.route_path, container.target, container=container.name)
    except (dockerapi.DockerError, ProxyError, SpawnTimeout) as error:
        log.warning("spawning %s failed: %s", container.name, error)
        _clean_up_failed(container, str(error))
        return container
    # Only a row still spawning becomes ready: it may have been killed meanwhile.
    if Container.objects.filter(pk=container.pk, state=Container.State.SPAWNING).update(
        state=Container.State.READY, ready_at=timezone.now()
    ):
        container.refresh_from_db()
    else:
        _tear_down(container)
    return container


class SpawnTimeout(Exception):
    pass


def wait_until_answering(container, timeout):
    """Poll the server's base path until it answers (any status below 400)."""
    url = f"{container.target}{container.base_path}"
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            if requests.get(url, timeout=2, allow_redirects=False).status_code < 400:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SpawnTimeout(f"{container.name} did not answer on {url} within {timeout}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _clean_up_failed(container, error):
    _remove_quietly(container)
    container.mark_failed(error)


# --- assignment -------------------------------------------------------------


def active_session(visitor):
    return Session.objects.active().select_related("container").filter(visitor=visitor).first()


def assign_container(*, pool, visitor, client_ip=None):
    """Give ``visitor`` a ready container of ``pool``: their own one if they
    already hold it, else a fresh one claimed atomically. None when none is ready.
    """
    session = active_session(visitor)
    if session is not None:
        return session
    for _ in range(20):
        candidate = pool.containers.ready().order_by("ready_at").values_list("pk", flat=True).first()
        if candidate is None:
            return None
        try:
            with transaction.atomic():
                # The conditional update changes one row for exactly one claimer;
                # the others see 0 and try the next candidate.
                claimed = Container.objects.filter(pk=candidate, state=Container.State.READY).update(
                    state=Container.State.ASSIGNED, assigned_at=timezone.now()
                )
                if claimed:
                    request_refill(pool.pk)
                    return Session.objects.select_related("container").create(
                        visitor=visitor, container_id=candidate, client_ip=client_ip
                    )
        except IntegrityError:
            # The same visitor won a claim in a concurrent request: ours rolled back.
            return active_session(visitor)
    return None


# --- ending -----------------------------------------------------------------


def end_session(session, reason, by=""):
    """End a session: its container is stopped and removed, its route deleted."""
    container = session.container
    with transaction.atomic():
        session.end(reason, by=by)
        Container.objects.filter(pk=container.pk).update(state=Container.State.STOPPING)
    _tear_down(container)


def kill_containers(containers, by):
    """The organiser's kill: ends each container's session (if any) with their
    name on it, or removes an unassigned container. The pools are refilled."""
    killed = 0
    for container in containers:
        session = Session.objects.active().filter(container=container).first()
        if session is not None:
            end_session(session, Session.EndReason.KILLED, by=by)
        elif container.state in Container.LIVE_STATES:
            Container.objects.filter(pk=container.pk).update(state=Container.State.STOPPING)
            _tear_down(container)
        else:
            continue
        killed += 1
        request_refill(container.pool_id)
    return killed


def kill_sessions(sessions, by):
    return kill_containers([session.container for session in sessions if session.is_active], by)


def stop_all_containers(reason=Session.EndReason.SERVICE_STOPPED):
    """End every session and remove every live container, as the service stops."""
    for session in Session.objects.active().select_related("container"):
        end_session(session, reason)
    for container in Container.objects.live():
        _tear_down(container)


def _tear_down(container):
    _remove_quietly(container)
    container.mark_gone()


def _remove_quietly(container):
    """Remove the container and its route. A failure is logged, not raised:
    the row is the record, and what is left behind is removed on a later try."""
    try:
        get_proxy().delete_route(container.route_path)
    except ProxyError as error:
        log.warning("could not delete the route of %s: %s", container.name, error)
    try:
        dockerapi.remove_container(container.docker_id or container.name)
    except dockerapi.DockerError as error:
        log.warning("could not remove %s: %s", container.name, error)
