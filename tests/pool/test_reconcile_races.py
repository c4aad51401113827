"""Reconcile against Docker and the proxy faked at their boundary, so that a
spawn can complete exactly between the listing and the reading of the rows."""

from dataclasses import replace

import pytest

from pool.models import Container
from pool.services import pools, spawning, upkeep
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
