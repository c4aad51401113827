"""Migrations renamed after they shipped still count as applied on a database
that applied them under their old name."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder


@pytest.mark.django_db(transaction=True)
def test_a_database_that_applied_0002_under_its_old_name_has_nothing_left_to_apply():
    recorder = MigrationRecorder(connection)
    recorder.record_unapplied("pool", "0002_container_node")
    recorder.record_applied("pool", "0002_issue8_node")
    try:
        executor = MigrationExecutor(connection)
        assert ("pool", "0002_container_node") in executor.loader.applied_migrations
        assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
    finally:
        recorder.record_unapplied("pool", "0002_issue8_node")
        recorder.record_applied("pool", "0002_container_node")
