"""When the Swarm backend takes a node, and the notebooks on it, as lost: with
the manager's API faked (tests/fakes.py FakeSwarm); the lab's tests restart
a real manager and stop a real node (tests/integration/test_swarm.py)."""

from datetime import UTC, datetime, timedelta

import pytest

from pool.backends import swarm as swarm_backend
from pool.models import Session
from pool.services import upkeep
from tests.factories import SessionFactory

GRACE = 60


@pytest.fixture(autouse=True)
def grace(settings):
    settings.TMPNB_NODE_GRACE = GRACE


def listed(fake_swarm, state, *, since=None):
    """The one notebook of a node in ``state``, as list_containers sees it."""
    fake_swarm.set_node("worker-1", state, since=since)
    fake_swarm.run_service("tmpnb-x-default-1", pool="default", node="worker-1")
    [info] = swarm_backend.list_containers()
    return info


@pytest.mark.parametrize("state", ["unknown", "disconnected"])
def test_a_node_not_ready_for_a_few_seconds_keeps_its_notebooks_running(fake_swarm, state):
    info = listed(fake_swarm, state, since=datetime.now(UTC) - timedelta(seconds=5))
    assert info.is_running and not info.node_down
    assert info.node == "worker-1"


@pytest.mark.parametrize("state", ["unknown", "disconnected"])
def test_a_node_not_ready_past_the_grace_loses_its_notebooks(fake_swarm, state):
    info = listed(fake_swarm, state, since=datetime.now(UTC) - timedelta(seconds=GRACE + 5))
    assert info.node_down and not info.is_running


def test_a_node_swarm_marks_down_loses_its_notebooks_at_once(fake_swarm):
    info = listed(fake_swarm, "down", since=datetime.now(UTC))
    assert info.node_down and info.status == "node down"


def test_a_node_removed_from_the_swarm_loses_its_notebooks(fake_swarm):
    fake_swarm.set_node("worker-1")
    fake_swarm.run_service("tmpnb-x-default-1", pool="default", node="worker-1")
    fake_swarm.remove_node("worker-1")
    [info] = swarm_backend.list_containers()
    assert info.node_down


def test_the_grace_is_counted_from_when_swarm_changed_the_node(fake_swarm, settings):
    since = datetime.now(UTC) - timedelta(seconds=30)
    assert not listed(fake_swarm, "unknown", since=since).node_down
    settings.TMPNB_NODE_GRACE = 20
    assert swarm_backend.list_containers()[0].node_down


def sessions_on(fake_swarm, node, count):
    fake_swarm.set_node(node)
    sessions = [SessionFactory(container__node=node) for _ in range(count)]
    for session in sessions:
        fake_swarm.run_service(session.container.name, pool=session.container.pool.name, node=node)
    return sessions


@pytest.mark.django_db(transaction=True)
def test_a_manager_restart_ends_no_session_and_a_node_down_ends_its_own(fake_swarm, fake_proxy):
    kept = sessions_on(fake_swarm, "worker-1", 2)
    lost = sessions_on(fake_swarm, "worker-2", 2)
    # The manager restarted: every node unknown since; then worker-2 does not come back.
    fake_swarm.set_node("worker-1", "unknown")
    fake_swarm.set_node("worker-2", "unknown")
    upkeep.reconcile()
    assert Session.objects.active().count() == 4
    fake_swarm.set_node("worker-1", "ready")
    fake_swarm.set_node("worker-2", "down")
    report = upkeep.reconcile()
    assert report.dead_replaced == 2
    for session in kept + lost:
        session.refresh_from_db()
    assert all(s.is_active for s in kept)
    assert {s.end_reason for s in lost} == {Session.EndReason.NODE_LOST}
    assert {s["Spec"]["Name"] for s in fake_swarm.service_list} == {s.container.name for s in kept}
