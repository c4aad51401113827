"""New rows written with the prepared INSERT (pool/services/rows.py): what
the ORM's own save() would have written, its errors, and its signals."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.db.models.signals import post_save

from pool.models import Container, Event, Session
from pool.services.rows import insert
from tests.factories import ContainerFactory

pytestmark = pytest.mark.django_db


def stored(instance):
    """The row as the database holds it, without its key."""
    row = type(instance).objects.filter(pk=instance.pk).values().get()
    row.pop("id")
    return row


def test_a_row_is_what_the_orms_save_writes(django_assert_num_queries):
    first, second = ContainerFactory.create_batch(2, state=Container.State.ASSIGNED)
    fields = {"client_ip": "2001:db8::1", "waited": timedelta(seconds=2.5)}
    with django_assert_num_queries(1):
        ours = insert(Session(visitor="a" * 32, container=first, **fields))
    orms = Session.objects.create(visitor="b" * 32, container=second, **fields)
    assert ours.pk is not None and not ours._state.adding
    assert Session.objects.get(pk=ours.pk).container == first
    mine, theirs = stored(ours), stored(orms)
    for row in (mine, theirs):
        assert row.pop("visitor") and row.pop("container_id")
        assert abs(row.pop("started_at") - row.pop("last_activity")) < timedelta(seconds=1)
    no_code = {
        "resume_code": None,
        "resume_key": None,
        "resume_made_at": None,
        "display_name": "",
        "hand_raised_at": None,
        "hand_text": "",
        "helper_looking_until": None,
    }
    assert mine == theirs == {"client_ip": "2001:db8::1", "ended_at": None, "end_reason": "", "ended_by": "", "waited": timedelta(seconds=2.5), **no_code}


def test_an_events_details_and_defaults_are_the_orms():
    container = ContainerFactory()
    event = insert(Event(kind=Event.Kind.ASSIGNMENT, message="m", pool_id=container.pool_id, container=container, details={"waited": 1.5, "é": [1]}))
    again = Event.objects.get(pk=event.pk)
    assert (again.kind, again.message, again.pool_id, again.container, again.details) == (
        "assignment",
        "m",
        container.pool_id,
        container,
        {"waited": 1.5, "é": [1]},
    )
    assert again.time == event.time and again.actor == "" and again.session is None


def test_a_second_live_session_of_a_visitor_is_refused_as_by_the_orm():
    first, second = ContainerFactory.create_batch(2, state=Container.State.ASSIGNED)
    insert(Session(visitor="v" * 32, container=first))
    with pytest.raises(IntegrityError), transaction.atomic():
        insert(Session(visitor="v" * 32, container=second))
    assert Session.objects.filter(visitor="v" * 32).count() == 1


def test_with_a_save_signal_listening_it_is_the_orms_save():
    heard = []

    def listen(sender, instance, created, **kwargs):
        heard.append((instance.pk, created))

    post_save.connect(listen, sender=Event)
    try:
        event = insert(Event(kind=Event.Kind.SPAWN, message="m"))
    finally:
        post_save.disconnect(listen, sender=Event)
    assert heard == [(event.pk, True)]
