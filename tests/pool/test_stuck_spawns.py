"""Which spawns the reconciler gives up on: one whose worker stopped renewing
its lease, or one whose task was lost; never one merely queued behind others
while the workers are busy spawning (filling a 200-seat pool queues 200)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pool.backends.base import ContainerInfo
from pool.models import Container, Event
from pool.services import pools, upkeep
from tests.factories import PoolFactory

pytestmark = pytest.mark.django_db

LONG_AGO = timedelta(hours=1)  # far beyond any spawn timeout


def queued(pool, n, *, since):
    rows = pools.fill_pool(pool.pk)[:n]
    Container.objects.filter(pk__in=[row.pk for row in rows]).update(created_at=timezone.now() - since)
    return rows


def test_spawns_queued_behind_others_being_spawned_are_not_failed(fake_backend, fake_proxy):
    pool = PoolFactory(capacity=10)
    rows = queued(pool, 10, since=LONG_AGO)
    working, waiting = rows[:2], rows[2:]
    for row in working:  # taken by a worker, whose lease is alive
        assert row.claim_spawn(timedelta(seconds=10))
    assert upkeep.reconcile().stuck_failed == 0
    assert set(Container.objects.filter(pk__in=[r.pk for r in waiting]).values_list("state", flat=True)) == {Container.State.SPAWNING}
    assert not Event.objects.filter(kind=Event.Kind.FAILURE).exists()


def test_spawns_queued_while_the_last_spawn_just_finished_are_not_failed(fake_backend, fake_proxy):
    pool = PoolFactory(capacity=3)
    done, *waiting = queued(pool, 3, since=LONG_AGO)
    # Its worker renewed its lease moments ago, then it became ready; the next claim is on its way.
    Container.objects.filter(pk=done.pk).update(state=Container.State.READY, ready_at=timezone.now(), lease_until=timezone.now() + timedelta(seconds=8))
    fake_backend.running[done.name] = ContainerInfo(backend_id=f"id-{done.name}", name=done.name, pool=pool.name, status="running")
    assert upkeep.reconcile().stuck_failed == 0
    assert set(Container.objects.filter(pk__in=[r.pk for r in waiting]).values_list("state", flat=True)) == {Container.State.SPAWNING}


def test_a_queued_spawn_is_failed_once_no_worker_has_spawned_anything_for_a_while(fake_backend, fake_proxy):
    """Its task was lost (the worker that had it stopped): nothing else will start it."""
    pool = PoolFactory(capacity=2)
    lost, recent = pools.fill_pool(pool.pk)
    Container.objects.filter(pk=lost.pk).update(created_at=timezone.now() - LONG_AGO)
    assert upkeep.reconcile().stuck_failed == 1
    assert Container.objects.get(pk=lost.pk).state == Container.State.FAILED
    assert Container.objects.get(pk=recent.pk).state == Container.State.SPAWNING  # queued moments ago


def test_a_spawn_whose_lease_ran_out_is_failed_whatever_else_is_spawning(fake_backend, fake_proxy):
    pool = PoolFactory(capacity=2)
    dead, alive = pools.fill_pool(pool.pk)
    assert dead.claim_spawn(timedelta(seconds=10)) and alive.claim_spawn(timedelta(seconds=10))
    Container.objects.filter(pk=dead.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert upkeep.reconcile().stuck_failed == 1
    assert Container.objects.get(pk=dead.pk).state == Container.State.FAILED
    assert Container.objects.get(pk=alive.pk).state == Container.State.SPAWNING
