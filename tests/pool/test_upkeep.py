"""Culling, reconciliation and drain against real Docker and the real proxy."""

from datetime import timedelta

import docker
import pytest
import requests
from django.conf import settings
from django.utils import timezone

from pool.backends import docker as docker_backend
from pool.backends.client import labels_for
from pool.models import Container, Session
from pool.services import assignment, pools, spawning, upkeep
from proxyapi import ProxyClient, get_proxy
from tests.factories import TINY_IMAGE, PoolFactory


def spawn_all(pool):
    return [spawning.spawn_container(c.pk) for c in pools.fill_pool(pool.pk)]


def assign(pool, visitor):
    return assignment.assign_container(pool=pool, visitor=visitor)


@pytest.fixture
def raw_docker():
    client = docker.from_env()
    yield client
    client.close()


# --- culling ----------------------------------------------------------------


def test_an_idle_session_is_culled_while_an_active_one_survives(clean_pools, proxy):
    pool = PoolFactory(capacity=3, cull_timeout=2)
    spawn_all(pool)
    idle, active = assign(pool, "idle"), assign(pool, "active")
    requests.get(f"{proxy.notebook_url}{active.container.base_path}", timeout=5).raise_for_status()  # through the proxy
    upkeep.sync_activity()
    idle.refresh_from_db()
    active.refresh_from_db()
    assert active.last_activity > active.started_at > idle.last_activity  # the proxy's record of the visit
    # A moment past the idle session's timeout, before the active one's.
    now = idle.last_activity + timedelta(seconds=pool.cull_timeout) + (active.last_activity - idle.last_activity) / 2
    culled = upkeep.cull_sessions(now=now)
    assert culled == {Session.EndReason.CULLED_IDLE: 1, Session.EndReason.CULLED_AGE: 0}
    idle.refresh_from_db()
    active.refresh_from_db()
    assert idle.end_reason == Session.EndReason.CULLED_IDLE and idle.ended_at
    assert active.ended_at is None
    assert Container.objects.get(pk=idle.container_id).state == Container.State.GONE
    running = [c.name for c in docker_backend.list_containers()]
    assert idle.container.name not in running and active.container.name in running
    assert idle.container.route_path not in proxy.routes()
    # The ready, unassigned container is never culled for idleness.
    assert Container.objects.ready().count() == 1


def test_a_session_past_cull_max_is_culled_even_though_active(clean_pools, proxy):
    pool = PoolFactory(capacity=1, cull_max=1)
    spawn_all(pool)
    session = assign(pool, "busy")
    requests.get(f"{proxy.notebook_url}{session.container.base_path}", timeout=5).raise_for_status()
    past_max = session.started_at + timedelta(seconds=pool.cull_max + 1)
    assert upkeep.cull_sessions(now=past_max)[Session.EndReason.CULLED_AGE] == 1
    session.refresh_from_db()
    assert session.end_reason == Session.EndReason.CULLED_AGE
    assert docker_backend.list_containers() == []


# --- reconciliation ---------------------------------------------------------


def test_a_container_killed_behind_the_services_back_is_replaced(clean_pools, raw_docker, endings_finish_here):
    # Its end is a kill's: the files copied out of the stopped container, then removed (here, at once).
    pool = PoolFactory(capacity=2)
    spawn_all(pool)
    session = assign(pool, "victim")
    raw_docker.containers.get(session.container.backend_id).kill()
    report = upkeep.reconcile()
    assert report.dead_replaced == 1
    session.refresh_from_db()
    assert session.end_reason == Session.EndReason.CONTAINER_GONE
    assert Container.objects.get(pk=session.container_id).state == Container.State.GONE
    assert session.container.backend_id not in [c.backend_id for c in docker_backend.list_containers()]
    assert session.container.route_path not in get_proxy().list_routes()
    [replacement] = spawn_all(pool)
    assert replacement.state == Container.State.READY


def test_a_route_deleted_behind_its_back_comes_back(clean_pools, proxy):
    pool = PoolFactory(capacity=1)
    [container] = spawn_all(pool)
    requests.delete(f"{proxy.api_url}/api/routes{container.route_path}", headers={"Authorization": f"token {proxy.token}"}, timeout=5)
    assert container.route_path not in proxy.routes()
    assert upkeep.reconcile().routes_added == 1
    assert proxy.routes()[container.route_path]["target"] == container.target
    assert requests.get(f"{proxy.notebook_url}{container.base_path}", timeout=5).text.strip() == f"container {container.base_path}"


def test_an_orphan_labelled_container_is_removed_and_an_unlabelled_one_left_alone(clean_pools, raw_docker):
    orphan = raw_docker.containers.run(TINY_IMAGE, "sleep 600", detach=True, name=f"tmpnb-{settings.TMPNB_INSTALLATION}-x-orphan", labels=labels_for("x"))
    stranger = raw_docker.containers.run(TINY_IMAGE, "sleep 600", detach=True, labels={"tmpnb.pool": "x"})
    try:
        assert upkeep.reconcile().orphans_removed == 1
        with pytest.raises(docker.errors.NotFound):
            raw_docker.containers.get(orphan.id)
        assert raw_docker.containers.get(stranger.id).status == "running"
    finally:
        stranger.remove(force=True)


def test_routes_without_a_live_container_are_deleted_and_others_routes_kept(routes_cleaned, transactional_db):
    client = get_proxy()
    client.add_route("/user/nobody", "http://127.0.0.1:1", container="nobody")
    foreign = ProxyClient(routes_cleaned.api_url, token=routes_cleaned.token, installation="another-installation")
    foreign.add_route("/user/theirs", "http://127.0.0.1:2")
    try:
        assert upkeep.reconcile().routes_deleted == 1
        assert "/user/nobody" not in routes_cleaned.routes()
        assert "/user/theirs" in routes_cleaned.routes()
    finally:
        foreign.delete_route("/user/theirs")


def test_a_spawn_whose_worker_died_is_failed_and_cleaned_up(clean_pools):
    pool = PoolFactory(capacity=2)
    started, queued = pools.fill_pool(pool.pk)
    Container.objects.filter(pk=started.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    Container.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(seconds=30))
    assert upkeep.reconcile().stuck_failed == 1
    assert Container.objects.get(pk=started.pk).state == Container.State.FAILED
    # One merely queued for a while is left to its worker.
    assert Container.objects.get(pk=queued.pk).state == Container.State.SPAWNING
    Container.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert upkeep.reconcile().stuck_failed == 1


def test_a_tick_makes_one_list_call_to_docker_and_one_to_the_proxy(clean_pools, monkeypatch):
    pool = PoolFactory(capacity=4)
    spawn_all(pool)
    for n in range(2):
        assign(pool, f"v{n}")
    calls = {"docker": 0, "proxy": 0}
    real_docker_list, real_proxy_list = docker_backend.list_containers, ProxyClient.list_routes

    def count_docker():
        calls["docker"] += 1
        return real_docker_list()

    def count_proxy(self, *args, **kwargs):
        calls["proxy"] += 1
        return real_proxy_list(self, *args, **kwargs)

    monkeypatch.setattr(docker_backend, "list_containers", count_docker)
    monkeypatch.setattr(ProxyClient, "list_routes", count_proxy)
    report = upkeep.reconcile()
    assert calls == {"docker": 1, "proxy": 1}
    assert report.dead_replaced == report.routes_added == report.orphans_removed == report.routes_deleted == 0


# --- drain ------------------------------------------------------------------


def test_drain_replaces_only_ready_containers(clean_pools):
    pool = PoolFactory(capacity=3)
    spawn_all(pool)
    session = assign(pool, "keeps-working")
    before = {c.backend_id for c in docker_backend.list_containers()}
    assert pools.drain_pool(pool) == 2
    assert [c.backend_id for c in docker_backend.list_containers()] == [session.container.backend_id]
    fresh = spawn_all(pool)
    assert len(fresh) == 2 and all(c.state == Container.State.READY for c in fresh)
    after = {c.backend_id for c in docker_backend.list_containers()}
    assert after & before == {session.container.backend_id}
    session.refresh_from_db()
    assert session.ended_at is None
