"""Ending containers: one way out for every reason (kill, cull, drain, shrink,
a container that died), so that container, route, row and session always end
together."""

import logging
from collections.abc import Iterable
from typing import Any

from django.core.cache import cache
from django.db import transaction

from pool.backends import get_backend
from pool.backends.base import BackendError
from pool.models import Container, Event, Session
from pool.services import worker
from pool.services.events import record_event
from pool.services.network import unguard_network
from pool.services.routes import unroute_container
from pool.services.snapshots import give_up_work, save_work, wait_for_copy
from proxyapi import get_proxy

log = logging.getLogger(__name__)


REFILL_GATHER_SECONDS = 1  # the cache's expiry is in whole seconds
VANISHED = "its container was gone before its files could be copied"


def request_refill(pool_id: int) -> None:
    """Queue a fill of the pool once the current transaction commits, so a
    place taken or freed is refilled now rather than at the next heartbeat.

    A burst asks for a refill on every claim; one per pool and second is
    enough, since a fill counts what is missing from the rows. The first
    request of a second queues a fill at once; one more is queued for the end
    of that second, to count the claims made meanwhile; the rest queue
    nothing. The heartbeat fills whatever a lost request missed.
    """

    def queue() -> None:
        try:
            if cache.add(f"tmpnb:refill:{pool_id}", 1, REFILL_GATHER_SECONDS):
                worker.send(worker.FILL_POOL, pool_id)
            elif cache.add(f"tmpnb:refill-later:{pool_id}", 1, REFILL_GATHER_SECONDS):
                worker.send(worker.FILL_POOL, pool_id, countdown=REFILL_GATHER_SECONDS)
        except Exception as error:  # the broker or cache is down: the heartbeat refills later
            log.warning("could not queue a refill of pool %s: %s", pool_id, error)

    transaction.on_commit(queue)


def retire_container(
    container: Container,
    reason: str,
    *,
    by: str = "",
    only_from: Iterable[str] = Container.sources_of(Container.State.STOPPING),
    refill: bool = True,
    delete_route: bool = True,
    on_worker: bool = False,
    files_left: bool = True,
) -> bool:
    """End ``container`` if it is still in one of ``only_from``: its session (if
    any) ends with ``reason``, the container and (unless ``delete_route`` is
    false) its route are removed, after its participant's work is saved
    (unless ``files_left`` is false: the container is gone already).

    The conditional update makes concurrent retirements (a cull racing a kill)
    end it once. With ``on_worker`` (a web request: the organiser's kill) the
    session and route end now and the copy and the removal are queued for the
    worker, so no request waits on a copy. Returns whether this call ended it.
    """
    with transaction.atomic():
        if not Container.objects.filter(pk=container.pk).move_to(Container.State.STOPPING, only_from=only_from):
            return False
        Session.objects.active().filter(container_id=container.pk).end(reason, by=by)
        if refill:
            request_refill(container.pool_id)
        if on_worker:
            transaction.on_commit(lambda: _finish_on_worker(container, files_left=files_left))
    log.info("retiring %s%s", container.name, f" ({reason})" if reason else "")
    if delete_route:
        unroute_container(container)
    if not on_worker:
        finish_retirement(container, files_left=files_left)
    return True


def finish_retirement(container: Container, *, delete_route: bool = False, files_left: bool = True) -> int:
    """The second half of an end (its container already STOPPING): the
    participant's work saved if due (bounded by TMPNB_SNAPSHOT_TIMEOUT; with
    ``files_left`` false, recorded as lost), then the container (and its
    route, with ``delete_route``) removed."""
    if files_left:
        save_work(container)
        wait_for_copy(container)  # another teardown's copy, if it was that one's to make
    else:
        give_up_work(container, VANISHED)
    remove_quietly(container, delete_route=delete_route)
    return container.mark_gone()


def _finish_on_worker(container: Container, *, files_left: bool) -> None:
    try:
        worker.send(worker.FINISH_RETIREMENT, container.pk, files_left=files_left)
    except Exception as error:  # the broker is down: do it here rather than leave it to the reconciler
        log.warning("could not queue the end of %s, ending it now: %s", container.name, error)
        finish_retirement(container, files_left=files_left)


def remove_quietly(container: Container, *, delete_route: bool = True) -> None:
    """Remove the container and its route. A failure is logged, not raised: the
    row is the record, and the reconciler removes what is left behind."""
    if delete_route:
        unroute_container(container)
    try:
        get_backend().remove_container(container.backend_id or container.name)
    except BackendError as error:
        log.warning("could not remove %s: %s", container.name, error)


def retire_and_record(
    container: Container,
    reason: str,
    *,
    kind: str,
    message: str,
    by: str = "",
    only_from: Iterable[str] = Container.sources_of(Container.State.STOPPING),
    on_worker: bool = False,
    files_left: bool = True,
    **details: Any,
) -> bool:
    """retire_container, then an event row naming the session it ended, if any."""
    if not retire_container(container, reason, by=by, only_from=only_from, on_worker=on_worker, files_left=files_left):
        return False
    session = Session.objects.filter(container_id=container.pk).first()
    record_event(kind, message, container=container, session=session, actor=by, reason=reason, **details)
    return True


def kill_containers(containers: Iterable[Container], *, by: str, on_worker: bool = False) -> int:
    """The organiser's kill: each container ends, and its session, if any,
    records who killed it. The pools are refilled. ``on_worker``: see
    retire_container."""
    return sum(
        retire_and_record(container, Session.EndReason.KILLED, kind=Event.Kind.KILL, message=f"{container.name} killed by {by}", by=by, on_worker=on_worker)
        for container in containers
    )


def kill_sessions(sessions: Iterable[Session], *, by: str, on_worker: bool = False) -> int:
    return kill_containers([session.container for session in sessions if session.is_active], by=by, on_worker=on_worker)


def stop_all_containers(reason: str = Session.EndReason.SERVICE_STOPPED) -> tuple[int, bool]:
    """End every session and remove every live container and the networks made
    for them, as the service stops for good. Returns how many it ended and
    whether the proxy answered: when it does not, its routes went with it and
    are not deleted one by one."""
    proxy_answers = get_proxy().answers()
    ended = 0
    for container in Container.objects.live():
        if container.state == Container.State.STOPPING:
            # Its teardown was interrupted: finish it (a stopping row cannot be retired again).
            ended += finish_retirement(container, delete_route=proxy_answers)
        else:
            ended += retire_container(container, reason, refill=False, delete_route=proxy_answers)
    try:
        get_backend().remove_networks()
    except BackendError as error:
        log.warning("could not remove the networks: %s", error)
    unguard_network()
    return ended, proxy_answers
