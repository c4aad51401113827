"""The container state machine: one table, one conditional update."""

import pytest

from pool.models import Container
from tests.factories import ContainerFactory

State = Container.State
pytestmark = pytest.mark.django_db


def test_a_row_moves_along_an_allowed_arrow_and_the_time_is_stamped():
    container = ContainerFactory(state=State.SPAWNING, ready_at=None)
    assert container.move_to(State.READY)
    assert container.state == State.READY and container.ready_at is not None
    assert container.move_to(State.ASSIGNED) and container.assigned_at is not None


def test_of_two_callers_moving_the_same_row_only_the_first_wins():
    container = ContainerFactory(state=State.READY)
    stale = Container.objects.get(pk=container.pk)
    assert container.move_to(State.ASSIGNED)
    assert not stale.move_to(State.ASSIGNED)


@pytest.mark.parametrize(
    "start, target",
    [(State.GONE, State.READY), (State.FAILED, State.STOPPING), (State.ASSIGNED, State.READY), (State.STOPPING, State.FAILED)],
)
def test_a_row_never_moves_against_the_table(start, target):
    container = ContainerFactory(state=start)
    assert not container.move_to(target)
    assert Container.objects.get(pk=container.pk).state == start


def test_asking_for_an_arrow_that_is_not_in_the_table_is_a_programming_error():
    with pytest.raises(ValueError):
        Container.objects.all().move_to(State.FAILED, only_from=[State.READY])


def test_a_drained_spawn_cannot_be_marked_failed():
    container = ContainerFactory(state=State.SPAWNING)
    assert container.move_to(State.STOPPING)
    assert not container.mark_failed("boom")
    assert Container.objects.get(pk=container.pk).state == State.STOPPING


def test_only_a_spawning_row_takes_a_lease_and_only_once():
    from datetime import timedelta

    container = ContainerFactory(state=State.SPAWNING)
    assert container.claim_spawn(timedelta(seconds=10))
    assert not Container.objects.get(pk=container.pk).claim_spawn(timedelta(seconds=10))
    assert container.renew_lease(timedelta(seconds=10))
    container.move_to(State.STOPPING)
    assert not container.renew_lease(timedelta(seconds=10))
