"""The pool's rules. Tests of spawning and ending use real Docker and the real
proxy; tests of counting and claiming use rows only."""

import threading

import pytest
import requests
from django.db import connection
from django.utils import timezone

from pool.backends import docker as docker_backend
from pool.models import Container, Pool, Session
from pool.services import assignment, ending, pools, spawning
from proxyapi import get_proxy
from tests.factories import ContainerFactory, PoolFactory

# --- filling ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_pool_gets_a_row_for_each_place():
    pool = PoolFactory(capacity=3)
    created = pools.fill_pool(pool.pk)
    assert len(created) == 3
    assert {c.state for c in created} == {Container.State.SPAWNING}
    assert len({c.path_id for c in created}) == 3
    assert pools.fill_pool(pool.pk) == []


@pytest.mark.django_db
def test_a_ready_target_keeps_only_that_many_waiting_and_starts_more_as_they_are_taken():
    pool = PoolFactory(capacity=10, ready_target=3)
    assert len(pools.fill_pool(pool.pk)) == 3
    Container.objects.filter(pool=pool).update(state=Container.State.ASSIGNED)
    assert len(pools.fill_pool(pool.pk)) == 3
    Container.objects.filter(pool=pool).update(state=Container.State.ASSIGNED)
    # 6 in use: only 4 places are left in the pool's capacity, 3 may wait.
    assert len(pools.fill_pool(pool.pk)) == 3
    Container.objects.filter(pool=pool).update(state=Container.State.ASSIGNED)
    assert len(pools.fill_pool(pool.pk)) == 1


@pytest.mark.django_db
def test_ended_containers_free_their_place():
    pool = PoolFactory(capacity=2)
    ContainerFactory(pool=pool, state=Container.State.GONE)
    ContainerFactory(pool=pool, state=Container.State.FAILED)
    ContainerFactory(pool=pool, state=Container.State.ASSIGNED)
    assert len(pools.fill_pool(pool.pk)) == 1


@pytest.mark.django_db
def test_resize_stores_the_size_and_keeps_the_ready_target_within_it():
    pool = PoolFactory(capacity=10, ready_target=8)
    pools.resize_pool(pool, 5)
    pool.refresh_from_db()
    assert (pool.capacity, pool.ready_target) == (5, 5)
    with pytest.raises(pools.PoolError, match="cannot be negative"):
        pools.resize_pool(pool, -1)


# --- assigning --------------------------------------------------------------


@pytest.mark.django_db
def test_a_visitor_gets_a_ready_container_and_the_same_one_again():
    pool = PoolFactory(capacity=2)
    first, second = ContainerFactory.create_batch(2, pool=pool)
    session = assignment.assign_container(pool=pool, visitor="v1", client_ip="10.1.2.3")
    assert session.container == first
    assert Container.objects.get(pk=first.pk).state == Container.State.ASSIGNED
    assert assignment.assign_container(pool=pool, visitor="v1").pk == session.pk
    assert assignment.assign_container(pool=pool, visitor="v2").container == second
    assert assignment.assign_container(pool=pool, visitor="v3") is None


@pytest.mark.django_db
def test_spawning_containers_are_never_handed_out():
    pool = PoolFactory()
    ContainerFactory(pool=pool, state=Container.State.SPAWNING)
    assert assignment.assign_container(pool=pool, visitor="v") is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_never_share_a_container():
    pool = PoolFactory(capacity=20)
    ContainerFactory.create_batch(20, pool=pool)
    results, errors = [], []

    def claim(visitor):
        try:
            session = assignment.assign_container(pool=pool, visitor=visitor)
            results.append(session.container_id if session else None)
        except Exception as error:  # reported below: a claimer must never fail
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(f"visitor-{n}",)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    given = [r for r in results if r is not None]
    assert len(given) == 20 and len(set(given)) == 20
    assert results.count(None) == 30
    assert Session.objects.count() == 20


# --- spawning and ending, for real ---------------------------------------------


def spawn_all(pool):
    return [spawning.spawn_container(c.pk) for c in pools.fill_pool(pool.pk)]


def test_a_spawned_container_answers_through_the_proxy_and_is_ready(clean_pools, proxy):
    pool = PoolFactory(capacity=1)
    [container] = spawn_all(pool)
    assert container.state == Container.State.READY
    assert container.backend_id and container.host_port
    assert proxy.routes()[container.route_path]["target"] == container.target
    assert proxy.routes()[container.route_path]["pool"] == pool.name  # for a reconcile of one pool
    page = requests.get(f"{proxy.notebook_url}{container.base_path}", timeout=5)
    assert page.status_code == 200
    assert page.text.strip() == f"container {container.base_path}"


def test_a_spawn_that_never_answers_fails_and_leaves_nothing(clean_pools, proxy, settings):
    settings.TMPNB_SPAWN_TIMEOUT = 1
    pool = PoolFactory(capacity=1, command="sh -c 'sleep 60 # {base_path}'")
    [container] = spawn_all(pool)
    assert container.state == Container.State.FAILED
    assert "did not answer" in container.error
    assert docker_backend.list_containers() == []
    assert container.route_path not in proxy.routes()


def test_a_spawn_with_a_missing_image_fails_with_the_reason(clean_pools):
    pool = PoolFactory(capacity=1, image="tmpnb/not-here:0")
    [container] = spawn_all(pool)
    assert container.state == Container.State.FAILED
    assert "image tmpnb/not-here:0 is not on this host" in container.error


def test_ending_a_session_removes_container_and_route_and_records_why(clean_pools, proxy):
    pool = PoolFactory(capacity=1)
    spawn_all(pool)
    session = assignment.assign_container(pool=pool, visitor="v")
    assert ending.kill_sessions([session], by="ada") == 1
    session.refresh_from_db()
    container = Container.objects.get(pk=session.container_id)
    assert session.ended_at and session.describe_end() == "killed by ada"
    assert container.state == Container.State.GONE
    assert docker_backend.list_containers() == []
    assert container.route_path not in proxy.routes()
    assert get_proxy().list_routes() == {}


def test_shrinking_removes_only_ready_containers(clean_pools, proxy):
    pool = PoolFactory(capacity=3)
    spawn_all(pool)
    session = assignment.assign_container(pool=pool, visitor="keeps-theirs")
    pools.resize_pool(pool, 1)
    assert pools.shrink_pool(pool.pk) == 2
    assert list(Container.objects.live()) == [session.container]
    assert [c.backend_id for c in docker_backend.list_containers()] == [session.container.backend_id]
    assert list(get_proxy().list_routes()) == [session.container.route_path]


@pytest.mark.django_db
def test_the_default_pool_is_made_from_settings(settings):
    settings.TMPNB_DEFAULT_POOL = {**settings.TMPNB_DEFAULT_POOL, "name": "from-settings", "capacity": 7}
    pool, created = pools.init_default_pool()
    assert created and pool.capacity == 7 and pool.image == settings.TMPNB_DEFAULT_POOL["image"]


@pytest.mark.django_db
def test_settings_given_in_the_environment_are_written_onto_the_existing_pool(settings):
    PoolFactory(name="default", capacity=3, image="old/image")
    settings.TMPNB_DEFAULT_POOL = {**settings.TMPNB_DEFAULT_POOL, "name": "default", "capacity": 9, "image": "new/image"}
    settings.TMPNB_POOL_FROM_ENVIRONMENT = ["image"]
    pool, created = pools.init_default_pool()
    assert not created
    assert (pool.image, pool.capacity) == ("new/image", 3)


# --- failures -----------------------------------------------------------------


def test_failing_spawns_back_off_then_pause_the_pool(clean_pools, settings):
    settings.TMPNB_SPAWN_FAILURES_TO_PAUSE = 3
    pool = PoolFactory(capacity=1, image="tmpnb/not-here:0")
    delays = []
    for _ in range(3):
        [row] = pools.fill_pool(pool.pk)
        assert spawning.spawn_container(row.pk).state == Container.State.FAILED
        pool.refresh_from_db()
        delays.append((pool.next_spawn_at - timezone.now()).total_seconds())
        assert pools.fill_pool(pool.pk) == []  # backing off
        Pool.objects.filter(pk=pool.pk).update(next_spawn_at=timezone.now())  # time passes
    assert 1 < delays[0] <= 2 < delays[1] <= 4 < delays[2] <= 8
    pool.refresh_from_db()
    assert pool.failure_streak == 3
    assert "paused after 3 failed spawns in a row" in pool.paused_reason
    assert "tmpnb/not-here:0 is not on this host" in pool.paused_reason
    assert pools.fill_pool(pool.pk) == []  # paused, however long one waits
    Pool.objects.filter(pk=pool.pk).update(image="tmpnb/tiny:latest")
    pools.resume_spawning(pool)
    [row] = pools.fill_pool(pool.pk)
    assert spawning.spawn_container(row.pk).state == Container.State.READY
    pool.refresh_from_db()
    assert (pool.failure_streak, pool.paused_reason) == (0, "")


def test_a_success_ends_a_failure_streak(clean_pools):
    pool = PoolFactory(capacity=1, failure_streak=2, next_spawn_at=timezone.now())
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    pool.refresh_from_db()
    assert (pool.failure_streak, pool.next_spawn_at) == (0, None)
