"""A pool's history (its ended containers, sessions, queue places and events,
kept TMPNB_HISTORY_DAYS) does not make the burst's paths slower: SQLite does
the same work for a claim, an admission, a waiting visitor's answer, the
outlook, the admin's list of pools, the heartbeat's prune, the organiser's
dashboard and the event log's date drill-down with a long history as without
one. The work is counted in
steps of SQLite's virtual machine, which the machine's load does not move."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.db import connection
from django.utils import timezone

from pool.models import Container, Event, Pool, QueueEntry
from pool.services import assignment, dashboard, waiting
from pool.services.events import periods_with_events
from pool.services.retention import prune_history
from tests.factories import ContainerFactory, PoolFactory, past_visitors

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "sqlite", reason="counts SQLite's steps"),
]

HISTORY = 2000  # past visitors of the busy pool
# Reading the history would cost at least one step per row; what an index
# search costs depends on the depth of its tree.
ALLOWED_EXTRA_STEPS = 300


def sqlite_steps(work: Callable[[], Any]) -> int:
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    connection.ensure_connection()
    connection.connection.set_progress_handler(count, 1)
    try:
        work()
    finally:
        connection.connection.set_progress_handler(None, 1)
    return steps


@pytest.fixture
def pools():
    """A new pool and one with a long history, each with 3 ready containers, a
    visitor in use and 2 waiting."""
    made = {"new": PoolFactory(name="new", capacity=100), "busy": past_visitors(PoolFactory(name="busy", capacity=100), HISTORY)}
    for pool in made.values():
        ContainerFactory.create_batch(3, pool=pool)
        assignment.admit(pool=pool, visitor=f"{pool.name}-in-use")
        for i in range(2):
            QueueEntry.objects.create(pool=pool, visitor=f"{pool.name}-waiting-{i}")
    return made


def assert_history_costs_nothing(pools, work: Callable[[Any], Any]):
    new, busy = sqlite_steps(lambda: work(pools["new"])), sqlite_steps(lambda: work(pools["busy"]))
    assert new > 0
    assert busy <= new + ALLOWED_EXTRA_STEPS, f"{busy} steps with {HISTORY} past visitors against {new} without"


def test_a_claim_does_not_read_the_pools_history(pools):
    assert_history_costs_nothing(pools, lambda pool: Container.objects.claim_longest_ready(pool.pk))


def test_a_claim_when_nobody_waits_and_its_refill_check_do_not_read_the_history(pools):
    QueueEntry.objects.update(left_at=timezone.now())  # nobody waits any more

    def admit(pool):
        assert assignment.admit(pool=pool, visitor=f"{pool.name}-newcomer").session is not None

    assert_history_costs_nothing(pools, admit)


def test_a_waiting_visitors_answer_does_not_read_the_history(pools):
    def answer(pool):
        status = waiting.admission_status(f"{pool.name}-waiting-1")
        assert status["status"] == "waiting" and status["position"] == 2

    assert_history_costs_nothing(pools, answer)


def test_the_waiting_rooms_outlook_does_not_read_the_history(pools):
    assert_history_costs_nothing(pools, waiting.pool_outlook)


def test_the_admins_pool_list_does_not_read_the_history(pools, rf, admin_user):
    request = rf.get("/admin/pool/pool/")
    request.user = admin_user
    listed = site._registry[Pool].get_queryset(request)

    def counts(pool):
        shown = listed.get(pk=pool.pk)
        assert (shown.ready_count, shown.in_use_count, shown.starting_count, shown.waiting_count) == (2, 1, 0, 2)

    assert_history_costs_nothing(pools, counts)


def test_the_heartbeats_prune_does_not_read_recent_history(pools):
    def prune(pool):
        assert not any(prune_history().values())

    new = sqlite_steps(lambda: prune(None))
    past_visitors(PoolFactory(name="later", capacity=1), HISTORY)
    assert sqlite_steps(lambda: prune(None)) <= new + ALLOWED_EXTRA_STEPS


def test_the_dashboard_reads_today_only():
    # It refreshes itself every few seconds while an organiser watches a workshop.
    now = timezone.now()  # rows made after it are still today's at midnight
    pool = past_visitors(PoolFactory(name="workshop", capacity=100), 30)  # today's, ended
    earlier = PoolFactory(name="earlier", capacity=100)
    ContainerFactory.create_batch(2, pool=pool)
    assignment.admit(pool=pool, visitor="in-use")

    def show():
        shown = dashboard.dashboard(now=now)
        assert (shown["today"]["sessions"], shown["today"]["visitors"], len(shown["sessions"])) == (31, 31, 1)
        assert len(shown["ended"]) == dashboard.RECENTLY_ENDED

    today = sqlite_steps(show)
    past_visitors(earlier, HISTORY, at=now - timedelta(days=2))
    assert sqlite_steps(show) <= today + ALLOWED_EXTRA_STEPS


def test_the_event_logs_date_drill_down_asks_the_index_not_every_event():
    now = timezone.now()
    past_visitors(PoolFactory(name="today"), 30)
    earlier = PoolFactory(name="earlier")
    events = Event.objects.all()

    def days():
        return len(periods_with_events(events, "day"))

    today = sqlite_steps(days)
    past_visitors(earlier, HISTORY, at=now - timedelta(days=2))
    assert sqlite_steps(days) <= today + ALLOWED_EXTRA_STEPS
