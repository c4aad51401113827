"""The address limit (TMPNB_MAX_PER_IP) and the visitor's standing that the
admission reads in one statement, checked against the models' own
definitions of a live session and a waiting place."""

import pytest
from django.utils import timezone

from pool.models import QueueEntry, Session
from pool.services import assignment
from pool.services.assignment import Standing, _standing
from tests.factories import PoolFactory, SessionFactory

pytestmark = pytest.mark.django_db

HOME = "203.0.113.5"


def place(pool, visitor, client_ip, **fields):
    return QueueEntry.objects.create(pool=pool, visitor=visitor, client_ip=client_ip, **fields)


def test_the_standing_counts_only_the_live_sessions_and_waiting_places_of_the_address():
    pool = PoolFactory(capacity=5)
    live = SessionFactory(visitor="holder", client_ip=HOME)
    SessionFactory(visitor="gone", client_ip=HOME, ended_at=timezone.now())
    SessionFactory(visitor="elsewhere", client_ip="203.0.113.6")
    place(pool, "waiter", HOME)
    place(pool, "served", HOME, served_at=timezone.now())
    place(pool, "left", HOME, left_at=timezone.now())
    held = Session.objects.active().filter(client_ip=HOME).count() + QueueEntry.objects.waiting().filter(client_ip=HOME).count()
    assert held == 2

    assert _standing("holder", HOME) == Standing(session_id=live.pk, waiting=False, held_by_address=held)
    assert _standing("waiter", HOME) == Standing(session_id=None, waiting=True, held_by_address=held)
    assert _standing("gone", HOME).session_id is None
    assert _standing("left", HOME).waiting is False
    assert _standing("newcomer", "198.51.100.1") == Standing(session_id=None, waiting=False, held_by_address=0)
    assert _standing("newcomer", None).held_by_address == 0


def test_a_place_in_the_queue_counts_towards_the_address_limit(settings):
    settings.TMPNB_MAX_PER_IP = 1
    pool = PoolFactory(capacity=5)
    assert assignment.admit(pool=pool, visitor="first", client_ip=HOME).entry is not None  # nothing ready: waits
    with pytest.raises(assignment.AddressLimitReached):
        assignment.admit(pool=pool, visitor="second", client_ip=HOME)
    assert assignment.admit(pool=pool, visitor="first", client_ip=HOME).entry is not None  # a reload keeps the place
    assert assignment.admit(pool=pool, visitor="third", client_ip="203.0.113.6").entry is not None
