"""Handing ready containers to visitors: once and only once, and in arrival
order when there are more visitors than containers (the waiting room)."""

from dataclasses import dataclass
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from pool.models import Container, Event, Pool, QueueEntry, Session
from pool.services.ending import request_refill
from pool.services.events import record_event
from pool.services.pools import PoolError


class AddressLimitReached(PoolError):
    """The visitor's network address already holds TMPNB_MAX_PER_IP notebooks."""


@dataclass(frozen=True)
class Admission:
    """What a visitor gets: their session, or their place in the queue."""

    session: Session | None = None
    entry: QueueEntry | None = None

    @property
    def next_path(self):
        return self.entry.next_path if self.entry else ""


def active_session(visitor):
    return Session.objects.active().select_related("container").filter(visitor=visitor).first()


def admit(*, pool, visitor, client_ip=None, path="", wait=True):
    """Give ``visitor`` their container, or their place in ``pool``'s queue.

    A ready container always goes to the visitor who has waited longest; a
    reload finds the same place. With ``wait=False`` a visitor who cannot be
    served at once is not queued.
    """
    session = active_session(visitor)
    if session is not None:
        return Admission(session=session)
    try:
        with transaction.atomic():
            # Admissions queue up on the pool row (on SQLite, IMMEDIATE
            # transactions do the same): counts and order below are exact.
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
                _check_address(client_ip)
                if not pool.queue.waiting().exists():
                    # Nobody waits: no queue to pass through (the common, fast case).
                    session = _claim_ready(pool, visitor, client_ip)
                    if session is not None:
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
        # The same visitor was admitted by a concurrent request: ours rolled back.
        return Admission(session=active_session(visitor))


def assign_container(*, pool, visitor, client_ip=None):
    """A container for ``visitor`` now, or None: they are not queued."""
    return admit(pool=pool, visitor=visitor, client_ip=client_ip, wait=False).session


def _check_address(client_ip):
    if client_ip is None:
        return
    held = Session.objects.active().filter(client_ip=client_ip).count()
    held += QueueEntry.objects.waiting().filter(client_ip=client_ip).count()
    if held >= settings.TMPNB_MAX_PER_IP:
        raise AddressLimitReached(
            f"{held} notebooks are already open or waiting from your network address, the most this service "
            "allows (TMPNB_MAX_PER_IP). Ask the organiser to raise it if many of you share one network."
        )


def _claim_ready(pool, visitor, client_ip, waited=None):
    """Hand the longest-ready container to ``visitor``; None if none is ready."""
    for container_pk in pool.containers.ready().order_by("ready_at", "pk").values_list("pk", flat=True)[:3]:
        # The conditional update changes the row for exactly one claimer.
        if Container.objects.filter(pk=container_pk).move_to(Container.State.ASSIGNED):
            request_refill(pool.pk)
            session = Session.objects.select_related("container").create(
                visitor=visitor, container_id=container_pk, client_ip=client_ip, waited=waited
            )
            record_event(
                Event.Kind.ASSIGNMENT, f"{session.container.name} assigned to visitor {session.visitor_tag}",
                pool=pool, container=session.container, session=session, actor=session.visitor_tag,
                waited=None if waited is None else round(waited.total_seconds(), 3),
            )
            return session
    return None


def _serve_queue(pool):
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
        if _claim_ready(pool, entry.visitor, entry.client_ip, waited=now - entry.joined_at) is None:
            break  # nothing more is ready
        QueueEntry.objects.filter(pk=entry.pk).update(served_at=now)
        served += 1
    return served


def serve_queue(pool_id):
    """Let waiting visitors in, now that containers may have become ready."""
    with transaction.atomic():
        pool = Pool.objects.select_for_update().get(pk=pool_id)
        return _serve_queue(pool)
