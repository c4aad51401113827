"""Handing a ready container to a visitor, once and only once."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from pool.models import Container, Event, Session
from pool.services.ending import request_refill
from pool.services.events import record_event

CLAIM_ATTEMPTS = 20


def active_session(visitor):
    return Session.objects.active().select_related("container").filter(visitor=visitor).first()


def assign_container(*, pool, visitor, client_ip=None):
    """Give ``visitor`` a ready container of ``pool``: their own one if they
    already hold it, else a fresh one claimed atomically. None when none is ready.
    """
    session = active_session(visitor)
    if session is not None:
        return session
    for _ in range(CLAIM_ATTEMPTS):
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
                    session = Session.objects.select_related("container").create(
                        visitor=visitor, container_id=candidate, client_ip=client_ip
                    )
                    record_event(
                        Event.Kind.ASSIGNMENT, f"{session.container.name} assigned to visitor {session.visitor_tag}",
                        pool=pool, container=session.container, session=session, actor=session.visitor_tag,
                    )
                    return session
        except IntegrityError:
            # The same visitor won a claim in a concurrent request: ours rolled back.
            return active_session(visitor)
    return None
