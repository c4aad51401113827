"""Migrations renamed after they shipped still count as applied on a database
that applied them under their old name."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone


@pytest.mark.django_db(transaction=True)
def test_a_database_that_applied_0002_under_its_old_name_has_nothing_left_to_apply():
    recorder = MigrationRecorder(connection)
    recorded = set(recorder.applied_migrations())
    recorder.record_unapplied("pool", "0002_container_node")
    recorder.record_applied("pool", "0002_issue8_node")
    try:
        executor = MigrationExecutor(connection)
        assert ("pool", "0002_container_node") in executor.loader.applied_migrations
        assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
    finally:
        # As it was: the tests after this one migrate this database.
        for name in ("0002_container_node", "0002_issue8_node"):
            recorder.record_unapplied("pool", name)
            if ("pool", name) in recorded:
                recorder.record_applied("pool", name)


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_the_history_indexes_keep_every_row_and_what_points_at_it():
    """0011 rebuilds the container table on SQLite: an upgrade keeps the
    containers, and the sessions and events that name them."""
    executor = MigrationExecutor(connection)
    executor.migrate([("pool", "0010_pool_materials")])
    try:
        old = executor.loader.project_state([("pool", "0010_pool_materials")]).apps
        pool = old.get_model("pool", "Pool").objects.create(name="kept", image="tmpnb/tiny:latest", capacity=2)
        container = old.get_model("pool", "Container").objects.create(pool=pool, name="kept-1", path_id="kept1", state="assigned")
        session = old.get_model("pool", "Session").objects.create(visitor="v", container=container)
        old.get_model("pool", "Event").objects.create(kind="assignment", pool=pool, container=container, session=session, message="kept")
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    from pool.models import Container, Event, Session

    kept = Container.objects.get(name="kept-1")
    assert kept.state == Container.State.ASSIGNED and kept.pool.name == "kept"
    assert Session.objects.get(visitor="v").container == kept
    assert Event.objects.get(message="kept").container == kept
    assert Container.objects.filter(pool=kept.pool, state=Container.State.ASSIGNED).get() == kept


@pytest.mark.django_db(transaction=True)
def test_an_upgrade_caps_the_pools_that_had_no_cpu_quota_at_one_core_and_keeps_the_others():
    """0013: no quota was the old default, not a choice (none can be chosen
    again with TMPNB_CPU_QUOTA=none or in the admin)."""
    executor = MigrationExecutor(connection)
    executor.migrate([("pool", "0012_sessions_by_start")])
    try:
        old = executor.loader.project_state([("pool", "0012_sessions_by_start")]).apps
        Pool = old.get_model("pool", "Pool")
        Pool.objects.create(name="uncapped", image="tmpnb/tiny:latest", capacity=2)
        Pool.objects.create(name="half", image="tmpnb/tiny:latest", capacity=2, cpu_quota=50_000)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    from pool.models import Pool

    assert dict(Pool.objects.filter(name__in=["uncapped", "half"]).values_list("name", "cpu_quota")) == {"uncapped": 100_000, "half": 50_000}


@pytest.mark.django_db(transaction=True)
def test_an_upgrade_keeps_each_workshops_pool_and_headcount_as_its_one_pool():
    """0029: a workshop runs on several pools, each with its headcount."""
    executor = MigrationExecutor(connection)
    executor.migrate([("pool", "0028_workshop_events")])
    try:
        old = executor.loader.project_state([("pool", "0028_workshop_events")]).apps
        pool = old.get_model("pool", "Pool").objects.create(name="python", image="tmpnb/tiny:latest", capacity=2)
        start = timezone.now()
        old.get_model("pool", "Workshop").objects.create(name="Intro", pool=pool, starts_at=start, ends_at=start + timedelta(hours=1), headcount=25)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    from pool.models import Workshop

    workshop = Workshop.objects.get(name="Intro")
    assert [(seat.pool.name, seat.headcount) for seat in workshop.seats_by_pool()] == [("python", 25)]
    assert workshop.headcount == 25
