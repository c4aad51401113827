"""Pruning history older than TMPNB_HISTORY_DAYS, with /metrics unchanged by it."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from pool.models import Container, Event, QueueEntry, Session
from pool.services import upkeep
from pool.services.retention import prune_all_history, prune_history
from tests.factories import ContainerFactory, PoolFactory, SessionFactory
from tests.pool.test_metrics import scrape

pytestmark = pytest.mark.django_db

LONG_AGO = timedelta(days=91)


def old_history(pool, n=1):
    """n of each kind of ended row, older than the default 90 days."""
    then = timezone.now() - LONG_AGO
    for i in range(n):
        ContainerFactory(pool=pool, state=Container.State.FAILED, created_at=then, ready_at=None, ended_at=then)
        spawned = ContainerFactory(pool=pool, state=Container.State.GONE, created_at=then - timedelta(seconds=1.5 + i), ready_at=then, ended_at=then)
        SessionFactory(container=spawned, started_at=then, ended_at=then, end_reason=Session.EndReason.CULLED_IDLE)
        QueueEntry.objects.create(pool=pool, visitor=f"old-{i}", joined_at=then, served_at=then)
        Event.objects.create(kind=Event.Kind.FAILURE, pool=pool, time=then, message="spawn failed")
        Event.objects.create(kind=Event.Kind.TURNED_AWAY, pool=pool, time=then, message="nothing ready")


@pytest.mark.postgres
def test_ended_rows_past_the_history_days_are_pruned_and_the_rest_kept():
    pool = PoolFactory(capacity=5)
    old_history(pool)
    live = SessionFactory(container__pool=pool, started_at=timezone.now() - LONG_AGO)  # still open: kept
    recent = ContainerFactory(pool=pool, state=Container.State.GONE, ended_at=timezone.now() - timedelta(days=89))
    waiting = QueueEntry.objects.create(pool=pool, visitor="waiting", joined_at=timezone.now() - LONG_AGO)
    pruned = prune_history()
    assert pruned == {"sessions": 1, "containers": 2, "events": 2, "queue entries": 1}
    assert list(Session.objects.all()) == [live]
    assert set(Container.objects.all()) == {live.container, recent}
    assert list(QueueEntry.objects.all()) == [waiting]
    assert not Event.objects.filter(time__lt=timezone.now() - timedelta(days=90)).exists()


@pytest.mark.postgres
def test_metrics_counters_are_the_same_after_pruning(client):
    pool = PoolFactory(capacity=5)
    old_history(pool, n=3)
    SessionFactory(container__pool=pool)
    before = scrape(client)
    assert prune_all_history()["sessions"] == 3
    assert not Session.objects.filter(ended_at__isnull=False).exists()
    after = scrape(client)
    assert after == pytest.approx(before)
    assert after[("tmpnb_culls_total", (("pool", "default"), ("reason", "culled-idle")))] == 3
    old_history(pool, n=1)  # more history, pruned in turn: the totals add up
    upkeep.heartbeat()
    assert not Session.objects.filter(ended_at__isnull=False).exists()  # the heartbeat pruned them
    assert scrape(client)[("tmpnb_assignments_total", (("pool", "default"),))] == 5


def test_a_long_backlog_is_pruned_a_batch_at_a_time():
    old_history(PoolFactory(capacity=5), n=3)
    assert prune_history(batch=2)["events"] == 2
    assert prune_history(batch=2)["events"] == 2
    assert prune_history(batch=2)["events"] == 2
    assert prune_history(batch=2)["events"] == 0


def test_history_days_is_a_setting(settings):
    settings.TMPNB_HISTORY_DAYS = 200
    old_history(PoolFactory(capacity=5))
    assert not any(prune_history().values())


def test_the_command_prunes_everything_due(capsys):
    old_history(PoolFactory(capacity=5), n=2)
    call_command("prune_history")
    assert not Event.objects.exists()
    assert "sessions: 2" in capsys.readouterr().out
