"""Handing ready containers to visitors: once and only once, and in arrival
order when there are more visitors than containers (the waiting room)."""

import functools
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import ngettext

from pool.models import LIVE_SESSION, WAITING_PLACE, Container, Event, Pool, QueueEntry, Session, where_sql
from pool.services.ending import request_refill
from pool.services.events import record_event
from pool.services.pools import PoolError
from pool.services.rows import insert
from pool.services.turns import announce_turn


class AddressLimitReached(PoolError):
    """The visitor's network address already holds TMPNB_MAX_PER_IP notebooks."""


@dataclass(frozen=True)
class Admission:
    """What a visitor gets: their session, or their place in the queue."""

    session: Session | None = None
    entry: QueueEntry | None = None

    @property
    def next_path(self) -> str:
        return self.entry.next_path if self.entry else ""


def active_session(visitor: str | None) -> Session | None:
    return Session.objects.active().select_related("container").filter(visitor=visitor).first()


def admit(*, pool: Pool, visitor: str, client_ip: str | None = None, path: str = "", wait: bool = True) -> Admission:
    """Give ``visitor`` their container, or their place in ``pool``'s queue.

    A ready container always goes to the visitor who has waited longest; a
    reload finds the same place. With ``wait=False`` a visitor who cannot be
    served at once is not queued.

    When nobody waits (the common case, a burst on a filled pool), the reads
    come first, in one statement and without any lock, and the claim is one
    short write that only one claimer can win. Only the waiting room takes the
    pool's lock, which keeps its order exact.
    """
    standing = _standing(visitor, client_ip)
    if standing.session_id is not None and (session := active_session(visitor)) is not None:
        return Admission(session=session)
    if not standing.waiting:
        _check_address(client_ip, standing.held_by_address)
        try:
            with transaction.atomic():
                session = claim_ready_container(pool, visitor=visitor, client_ip=client_ip, only_if_nobody_waits=True)
        except IntegrityError:
            # The same visitor was admitted by a concurrent request: ours rolled back.
            return Admission(session=active_session(visitor))
        if session is not None:
            _refill_after_claim(pool)
            return Admission(session=session)
    return _admit_through_queue(pool, visitor=visitor, client_ip=client_ip, path=path, wait=wait)


def _admit_through_queue(pool: Pool, *, visitor: str, client_ip: str | None, path: str, wait: bool) -> Admission:
    """Nothing was ready, or someone waits: the visitor takes (or keeps) their
    place, and the head of the queue gets whatever is ready, under the pool's
    lock (on SQLite, IMMEDIATE transactions do the same)."""
    try:
        with transaction.atomic():
            Pool.objects.select_for_update().filter(pk=pool.pk).exists()
            if (session := active_session(visitor)) is not None:
                return Admission(session=session)
            entry = QueueEntry.objects.waiting().filter(visitor=visitor).first()
            if entry is not None and entry.pool_id != pool.pk:
                # Waiting for another pool, they opened this one: the last pool
                # asked for is the one they want, so the place moves here, behind
                # those already waiting (the waiting page does not name a pool:
                # waiting on for the first would land them where they no longer asked).
                QueueEntry.objects.filter(pk=entry.pk).update(left_at=timezone.now())
                entry = None
            if entry is None:
                _check_address(client_ip, _standing(visitor, client_ip).held_by_address)
                if not pool.queue.waiting().exists():
                    # Became ready meanwhile, and still nobody waits.
                    session = claim_ready_container(pool, visitor=visitor, client_ip=client_ip)
                    if session is not None:
                        _refill_after_claim(pool)
                        return Admission(session=session)
                if not wait:
                    return Admission()
                entry = QueueEntry.objects.create(pool=pool, visitor=visitor, client_ip=client_ip, next_path=path)
            else:
                QueueEntry.objects.filter(pk=entry.pk).update(last_seen=timezone.now())
            _serve_queue(pool)
            if (session := active_session(visitor)) is not None:
                return Admission(session=session, entry=entry)
            request_refill(pool.pk)  # the queue may let the pool spawn more
            return Admission(entry=entry)
    except IntegrityError:
        return Admission(session=active_session(visitor))


def assign_container(*, pool: Pool, visitor: str, client_ip: str | None = None) -> Session | None:
    """A container for ``visitor`` now, or None: they are not queued."""
    return admit(pool=pool, visitor=visitor, client_ip=client_ip, wait=False).session


@dataclass(frozen=True)
class Standing:
    """What a visitor and their network address hold before an admission."""

    session_id: int | None  # their live session's, if any
    waiting: bool  # they hold a place in a queue
    held_by_address: int  # live sessions and places in queues of their address


def _standing(visitor: str, client_ip: str | None) -> Standing:
    """The visitor's standing, read in one statement (the admission's hot path:
    building the ORM's four queries cost more than running them). Its
    conditions are those of SessionQuerySet.active and
    QueueEntryQuerySet.waiting; partial indexes on the visitor and on the
    address keep each part to the live rows."""
    sessions, queue = Session._meta.db_table, QueueEntry._meta.db_table
    live, live_params = where_sql(Session, LIVE_SESSION)
    waiting, waiting_params = where_sql(QueueEntry, WAITING_PLACE)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT id FROM {sessions} WHERE visitor = %s AND {live}),"
            f" EXISTS (SELECT 1 FROM {queue} WHERE visitor = %s AND {waiting}),"
            f" (SELECT count(*) FROM {sessions} WHERE client_ip = %s AND {live})"
            f" + (SELECT count(*) FROM {queue} WHERE client_ip = %s AND {waiting})",
            [visitor, *live_params, visitor, *waiting_params, client_ip, *live_params, client_ip, *waiting_params],
        )
        session_id, waiting_now, held = cursor.fetchone()
    return Standing(session_id=session_id, waiting=bool(waiting_now), held_by_address=held)


def _check_address(client_ip: str | None, held: int) -> None:
    """Refuse a visitor whose address already holds ``held`` notebooks or places."""
    if client_ip is None:
        return
    if held >= settings.TMPNB_MAX_PER_IP:
        # Shown to the visitor, so in their language.
        raise AddressLimitReached(
            ngettext(
                "%(count)d notebook is already open or waiting from your network address, the most this service "
                "allows (TMPNB_MAX_PER_IP). Ask the organiser to raise it if many of you share one network.",
                "%(count)d notebooks are already open or waiting from your network address, the most this service "
                "allows (TMPNB_MAX_PER_IP). Ask the organiser to raise it if many of you share one network.",
                held,
            )
            % {"count": held}
        )


def claim_ready_container(
    pool: Pool,
    *,
    visitor: str,
    client_ip: str | None = None,
    waited: timedelta | None = None,
    only_if_nobody_waits: bool = False,
    display_name: str = "",
) -> Session | None:
    """Hand the longest-ready container of ``pool`` to ``visitor`` and open
    their session; None if none is ready (or, with ``only_if_nobody_waits``,
    if someone waits: they come first). Call it inside a transaction.

    The claim is one UPDATE that only one claimer can win
    (``ContainerQuerySet.claim_longest_ready``); the unique live session per
    visitor is the second lock.
    """
    container = Container.objects.claim_longest_ready(pool.pk, only_if_nobody_waits=only_if_nobody_waits)
    if container is None:
        return None
    session = insert(Session(visitor=visitor, container=container, client_ip=client_ip, waited=waited, display_name=display_name))
    record_event(
        Event.Kind.ASSIGNMENT,
        f"{container.name} assigned to visitor {session.visitor_tag}",
        pool=pool,
        container=container,
        session=session,
        actor=session.visitor_tag,
        waited=None if waited is None else round(waited.total_seconds(), 3),
    )
    return session


def _refill_after_claim(pool: Pool) -> None:
    """A claim leaves the pool's live count as it was: a pool at capacity has
    nothing to refill, so most claims of a burst queue nothing. (Counted in
    plain SQL: on this path, building the ORM's query cost more than the count.)"""
    live, live_params = where_sql(Container, Container.LIVE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {Container._meta.db_table} WHERE pool_id = %s AND {live}", [pool.pk, *live_params])
        (live,) = cursor.fetchone()
    if live < pool.capacity:
        request_refill(pool.pk)


def _serve_queue(pool: Pool) -> int:
    """Give the ready containers to the visitors at the head of the queue."""
    ready = pool.containers.ready().count()
    if not ready:
        return 0
    served = 0
    now = timezone.now()
    # A few more than ready: an entry served elsewhere meanwhile is skipped.
    for entry in pool.queue.waiting().in_order()[: ready + 10]:
        if Session.objects.active().filter(visitor=entry.visitor).exists():
            # Served elsewhere meanwhile (another pool): their place is no longer needed.
            QueueEntry.objects.filter(pk=entry.pk).update(left_at=now)
            continue
        claimed = claim_ready_container(pool, visitor=entry.visitor, client_ip=entry.client_ip, waited=now - entry.joined_at, display_name=entry.display_name)
        if claimed is None:
            break  # nothing more is ready
        transaction.on_commit(functools.partial(announce_turn, entry.visitor))
        QueueEntry.objects.filter(pk=entry.pk).update(served_at=now)
        served += 1
    if served:
        # As after an admission's claim: a pool at capacity has nothing to
        # refill, and the worker serves the queue after every spawn of a burst.
        _refill_after_claim(pool)
    return served


def serve_queue(pool_id: int) -> int:
    """Let waiting visitors in, now that containers may have become ready."""
    with transaction.atomic():
        pool = Pool.objects.select_for_update().get(pk=pool_id)
        return _serve_queue(pool)
