"""The spawn's rules where they meet an outside call, with Docker and the
proxy faked at their boundary so the interleaving is exact."""

import pytest

from pool.backends.base import BackendError
from pool.models import Container, Event, Pool
from pool.services import pools, spawning, upkeep
from tests.factories import PoolFactory

pytestmark = pytest.mark.django_db(transaction=True)


def spawn_while(fake_backend, happening, capacity=1):
    pool = PoolFactory(capacity=capacity)
    rows = pools.fill_pool(pool.pk)
    fake_backend.on_start = happening
    return pool, [spawning.spawn_container(row.pk) for row in rows]


def assert_no_failure_counted(pool):
    pool.refresh_from_db()
    assert (pool.failure_streak, pool.next_spawn_at, pool.paused_reason) == (0, None, "")
    assert not Event.objects.filter(kind=Event.Kind.FAILURE).exists()
    assert not Container.objects.filter(state=Container.State.FAILED).exists()


@pytest.mark.parametrize("start_fails", [False, True], ids=["start-succeeds", "start-fails"])
def test_a_container_drained_while_it_starts_is_cancelled_not_failed(fake_backend, fake_proxy, start_fails):
    def drain(spec):
        pools.drain_pool(Pool.objects.get(name=spec.pool))
        if start_fails:  # Docker removed it under the starting call
            raise BackendError(f"starting {spec.name}: 404 No such container")

    pool, [container] = spawn_while(fake_backend, drain)
    assert Container.objects.get(pk=container.pk).state == Container.State.GONE
    assert fake_backend.running == {} and fake_proxy.routes == {}
    assert_no_failure_counted(pool)


def test_three_drains_while_starting_never_pause_the_pool(fake_backend, fake_proxy, settings):
    settings.TMPNB_SPAWN_FAILURES_TO_PAUSE = 3
    pool = PoolFactory(capacity=3)
    fake_backend.on_start = lambda spec: pools.drain_pool(pool)
    for _ in range(3):
        rows = pools.fill_pool(pool.pk)
        for row in rows:
            spawning.spawn_container(row.pk)
        assert rows and {c.state for c in Container.objects.filter(pk__in=[r.pk for r in rows])} == {Container.State.GONE}
    assert_no_failure_counted(pool)
    fake_backend.on_start = None
    spawned = [spawning.spawn_container(row.pk) for row in pools.fill_pool(pool.pk)]
    assert [c.state for c in spawned] == [Container.State.READY] * 3


def test_a_start_that_fails_on_its_own_counts_towards_the_backoff(fake_backend, fake_proxy):
    def refuse(spec):
        raise BackendError("image is not on this host")

    pool, [container] = spawn_while(fake_backend, refuse)
    assert container.state == Container.State.FAILED
    pool.refresh_from_db()
    assert pool.failure_streak == 1 and pool.next_spawn_at is not None


def test_the_lease_is_renewed_while_docker_creates_and_starts_the_container(fake_backend, fake_proxy, monkeypatch):
    """Create and start can wait for a Docker slot and take DOCKER_TIMEOUT:
    a reconcile meanwhile must not take the spawn for dead."""
    from datetime import timedelta

    from django.db import connection

    monkeypatch.setattr(spawning, "SPAWN_LEASE", timedelta(seconds=0.6))
    reports = []

    def slow_start_with_a_reconcile(spec):
        import time

        time.sleep(1.5)  # more than two leases
        try:
            reports.append(upkeep.reconcile())
        finally:
            connection.close()  # this thread's own connection

    pool, [container] = spawn_while(fake_backend, slow_start_with_a_reconcile)
    assert reports[0].stuck_failed == 0
    assert Container.objects.get(pk=container.pk).state == Container.State.READY


def test_any_error_of_a_spawn_fails_it_counts_towards_the_pause_and_is_logged_with_its_traceback(fake_proxy, settings, caplog):
    """A pool saved before its command was checked (unbalanced quotes): docker-py
    splits the command with shlex before it sends anything to Docker, and raises
    ValueError, which is none of the errors a spawn expects."""
    settings.TMPNB_DOCKER_VERSION = "1.41"  # no word to the (absent) engine before the split
    settings.TMPNB_ROUTE_TO = "published"
    settings.TMPNB_SPAWN_FAILURES_TO_PAUSE = 2
    pool = PoolFactory(capacity=2)
    Pool.objects.filter(pk=pool.pk).update(command="serve {base_path} --root='/home/jovyan")
    spawned = [spawning.spawn_container(row.pk) for row in pools.fill_pool(pool.pk)]
    assert [c.state for c in spawned] == [Container.State.FAILED] * 2
    assert all("ValueError: No closing quotation" in c.error for c in spawned)
    pool.refresh_from_db()
    assert pool.failure_streak == 2
    assert "paused after 2 failed spawns in a row" in pool.paused_reason and "No closing quotation" in pool.paused_reason
    assert Event.objects.filter(kind=Event.Kind.FAILURE, message__contains="No closing quotation").count() == 2
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert [record.exc_info[0] for record in tracebacks] == [ValueError] * 2
