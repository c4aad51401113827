"""Reconcile against Docker and the proxy faked at their boundary, so that a
spawn can complete exactly between the listing and the reading of the rows."""

from dataclasses import replace

import pytest

from pool.backends.base import BackendError, ContainerInfo
from pool.models import Container
from pool.services import pools, spawning, upkeep
from proxyapi import ProxyError
from tests.factories import PoolFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_spawn_that_becomes_ready_while_docker_is_listed_is_not_taken_for_gone(fake_backend, fake_proxy, monkeypatch):
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    real_list = fake_backend.list_containers

    def list_then_spawn_completes():
        listed = real_list()  # taken before the container exists
        spawning.spawn_container(row.pk)
        return listed

    monkeypatch.setattr(fake_backend, "list_containers", list_then_spawn_completes)
    report = upkeep.reconcile()
    assert report.dead_replaced == 0
    assert Container.objects.get(pk=row.pk).state == Container.State.READY
    assert row.name in fake_backend.running and row.name not in fake_backend.removed


def test_a_spawn_listed_between_its_create_and_its_start_is_not_taken_for_stopped(fake_backend, fake_proxy, monkeypatch):
    # Seen with two workers on PostgreSQL: Docker listed the container as
    # "created", and the row was ready by the time the rows were read.
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    real_list = fake_backend.list_containers

    def listed_while_starting_then_spawn_completes():
        spawning.spawn_container(row.pk)
        return [replace(info, status="created") if info.name == row.name else info for info in real_list()]

    monkeypatch.setattr(fake_backend, "list_containers", listed_while_starting_then_spawn_completes)
    assert upkeep.reconcile().dead_replaced == 0
    assert Container.objects.get(pk=row.pk).state == Container.State.READY
    assert row.name in fake_backend.running and row.name not in fake_backend.removed


def test_a_ready_container_listed_as_stopped_is_still_replaced(fake_backend, fake_proxy, monkeypatch):
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    real_list = fake_backend.list_containers
    monkeypatch.setattr(fake_backend, "list_containers", lambda: [replace(info, status="exited") for info in real_list()])
    assert upkeep.reconcile().dead_replaced == 1
    assert Container.objects.get(pk=row.pk).state == Container.State.GONE


def test_a_ready_container_missing_from_docker_is_still_replaced(fake_backend, fake_proxy):
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    fake_backend.running.clear()  # it died
    assert upkeep.reconcile().dead_replaced == 1
    assert Container.objects.get(pk=row.pk).state == Container.State.GONE


def test_a_container_is_an_orphan_only_if_no_live_row_names_it_after_the_listing(fake_backend, fake_proxy, monkeypatch):
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    fake_backend.running["tmpnb-stray"] = fake_backend.running[row.name].__class__(
        backend_id="id-tmpnb-stray", name="tmpnb-stray", pool=pool.name, status="running"
    )
    report = upkeep.reconcile()
    assert report.orphans_removed == 1 and fake_backend.removed == ["tmpnb-stray"]
    assert Container.objects.get(pk=row.pk).state == Container.State.READY


def test_one_failing_repair_is_logged_and_counted_and_every_other_repair_still_runs(fake_backend, fake_proxy, monkeypatch, caplog):
    pool = PoolFactory(capacity=2)
    unrouted, dead = [spawning.spawn_container(row.pk) for row in pools.fill_pool(pool.pk)]
    del fake_proxy.routes[unrouted.route_path]  # its route must come back, and the proxy refuses it
    real_add_route = fake_proxy.add_route

    def refuse_one(path, target, **data):
        if path == unrouted.route_path:
            raise ProxyError(f"adding route {path}: HTTP 500")
        real_add_route(path, target, **data)

    monkeypatch.setattr(fake_proxy, "add_route", refuse_one)
    del fake_backend.running[dead.name]  # it died: replaced
    for name in ("tmpnb-stuck", "tmpnb-stray"):  # orphans; Docker cannot remove the first
        fake_backend.running[name] = ContainerInfo(backend_id=f"id-{name}", name=name, pool=pool.name, status="running")
    real_remove = fake_backend.remove_container

    def refuse_stuck(backend_id):
        if backend_id == "id-tmpnb-stuck":
            raise BackendError("removing tmpnb-stuck: 500 driver failed programming external connectivity")
        real_remove(backend_id)

    monkeypatch.setattr(fake_backend, "remove_container", refuse_stuck)
    fake_proxy.add_route("/user/nobody", "http://127.0.0.1:1")  # a stray route

    report = upkeep.reconcile()
    assert report.repairs_failed == 2
    assert (report.dead_replaced, report.orphans_removed, report.routes_deleted) == (1, 1, 1)
    assert Container.objects.get(pk=dead.pk).state == Container.State.GONE
    assert "tmpnb-stray" not in fake_backend.running and "/user/nobody" not in fake_proxy.routes
    assert "tmpnb-stuck" in fake_backend.running and Container.objects.get(pk=unrouted.pk).state == Container.State.READY
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "HTTP 500" in logged and "driver failed programming" in logged


def test_an_unforeseen_error_in_a_repair_is_logged_with_its_traceback_and_the_rest_still_runs(fake_backend, fake_proxy, monkeypatch, caplog):
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    fake_backend.running["tmpnb-stray"] = ContainerInfo(backend_id="id-tmpnb-stray", name="tmpnb-stray", pool=pool.name, status="running")
    fake_proxy.add_route("/user/nobody", "http://127.0.0.1:1")
    monkeypatch.setattr(fake_backend, "remove_container", lambda backend_id: {}["a bug"])
    report = upkeep.reconcile()
    assert (report.repairs_failed, report.routes_deleted) == (1, 1)
    [logged] = [record for record in caplog.records if record.exc_info]
    assert logged.exc_info[0] is KeyError and "tmpnb-stray" in logged.getMessage()


def test_a_reconcile_that_fails_unforeseen_still_lets_the_heartbeat_fill_the_pools(fake_backend, fake_proxy, monkeypatch, caplog):
    PoolFactory(capacity=1)
    monkeypatch.setattr(fake_backend, "list_containers", lambda: [{}["an answer of an unexpected shape"]])
    assert len(upkeep.heartbeat()) == 1
    [logged] = [record for record in caplog.records if record.exc_info]
    assert logged.exc_info[0] is KeyError and "reconcile skipped" in logged.getMessage()
