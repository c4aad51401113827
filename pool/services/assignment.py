"""Handing a ready container to a visitor, once and only once."""

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from pool.models import Container, Pool, Session
from pool.services.ending import request_refill
from pool.services.pools import PoolError

CLAIM_ATTEMPTS = 20


class AddressLimitReached(PoolError):
    """The visitor's network address already holds TMPNB_MAX_PER_IP notebooks."""


def active_session(visitor):
    return Session.objects.active().select_related("container").filter(visitor=visitor).first()


def assign_container(*, pool, visitor, client_ip=None):
    """Give ``visitor`` a ready container of ``pool``: their own one if they
    already hold it, else a fresh one claimed atomically. None when none is
    ready; AddressLimitReached when their address holds its share already.
    """
    session = active_session(visitor)
    if session is not None:
        return session
    for _ in range(CLAIM_ATTEMPTS):
        try:
            with transaction.atomic():
                # Claims queue up on the pool row (on SQLite, IMMEDIATE
                # transactions do the same), so the address count below is exact.
                Pool.objects.select_for_update().filter(pk=pool.pk).exists()
                _check_address(client_ip)
                candidate = pool.containers.ready().order_by("ready_at").values_list("pk", flat=True).first()
                if candidate is None:
                    return None
                # The conditional update changes the row for exactly one claimer.
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


def _check_address(client_ip):
    if client_ip is None:
        return
    held = Session.objects.active().filter(client_ip=client_ip).count()
    if held >= settings.TMPNB_MAX_PER_IP:
        raise AddressLimitReached(
            f"{held} notebooks are already open from your network address, the most this service allows "
            "(TMPNB_MAX_PER_IP). Ask the organiser to raise it if many of you share one network."
        )
