"""The SQLite backend's queue for the write lock (tmpnb_site/sqlite3): the
threads of a process take turns on a lock of their own, held from BEGIN to
COMMIT or ROLLBACK, and given back whatever ends the transaction."""

import threading

import pytest
from django.db import connection, transaction

from pool.models import Event
from tmpnb_site.sqlite3 import base

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite backend's own queue"),
]


def test_a_transaction_holds_the_writer_lock_until_it_commits():
    assert not base._writer.locked()
    with transaction.atomic():
        Event.objects.create(kind="test", message="first")
        assert base._writer.locked()
        with transaction.atomic():  # a savepoint: no second turn
            Event.objects.create(kind="test", message="second")
    assert not base._writer.locked()
    assert Event.objects.filter(kind="test").count() == 2


def test_a_rollback_gives_the_lock_back():
    with pytest.raises(RuntimeError), transaction.atomic():
        Event.objects.create(kind="test", message="lost")
        raise RuntimeError
    assert not base._writer.locked()
    assert not Event.objects.filter(kind="test").exists()


def test_closing_the_connection_in_a_transaction_gives_the_lock_back():
    with transaction.atomic():
        Event.objects.create(kind="test", message="lost")
        connection.close()
    assert not base._writer.locked()
    assert not Event.objects.filter(kind="test").exists()


def test_another_thread_waits_for_the_commit_then_writes():
    order = []
    second_started = threading.Event()

    def second():
        second_started.set()
        with transaction.atomic():
            order.append("second")
            Event.objects.create(kind="test", message="second")
        connection.close()

    thread = threading.Thread(target=second)
    with transaction.atomic():
        Event.objects.create(kind="test", message="first")
        thread.start()
        second_started.wait(5)
        threading.Event().wait(0.2)
        order.append("first")  # the second thread is still waiting for its turn
    thread.join(10)
    assert order == ["first", "second"]
    assert list(Event.objects.filter(kind="test").order_by("pk").values_list("message", flat=True)) == ["first", "second"]


def test_a_thread_that_waited_its_whole_timeout_goes_on_to_sqlites_own_wait():
    connection.settings_dict["OPTIONS"]["timeout"] = 0.2
    try:
        base._writer.acquire()  # held by something that never lets go
        with transaction.atomic():
            Event.objects.create(kind="test", message="written anyway")
    finally:
        base._writer.release()
        connection.settings_dict["OPTIONS"]["timeout"] = 30
    assert Event.objects.filter(kind="test").count() == 1
