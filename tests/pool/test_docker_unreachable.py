"""Docker unreachable once its client exists (the engine restarted, its socket
gone quiet): docker-py then raises requests' ConnectionError and ReadTimeout,
which the backends turn into BackendError like any refusal, so the service
carries on and cleans up."""

import socket

import pytest

from pool.backends import docker as docker_backend, swarm as swarm_backend
from pool.backends.base import BackendError, ContainerSpec
from pool.backends.client import _docker_slots
from pool.models import Container, Event
from pool.services import ending, pools, spawning, upkeep
from tests.factories import ContainerFactory, PoolFactory


def spec():
    return ContainerSpec(name="tmpnb-unreachable", image="tmpnb/tiny:latest", command="true", pool="p", container_port=8888, host_ip="127.0.0.1")


@pytest.fixture
def silent_socket():
    """A socket that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture(params=["closed", "silent"])
def unreachable_docker(request, settings, monkeypatch):
    # A fixed API version: the client is made without a word to the engine,
    # as when it was made before the engine went away.
    settings.TMPNB_DOCKER_VERSION = "1.41"
    settings.DOCKER_TIMEOUT = 1
    settings.DOCKER_HOST = "tcp://127.0.0.1:9" if request.param == "closed" else request.getfixturevalue("silent_socket")
    yield
    settings.DOCKER_HOST = "unix:///var/run/docker.sock"


@pytest.mark.parametrize(
    "call",
    [
        lambda backend: backend.list_containers(),
        lambda backend: backend.remove_container("tmpnb-unreachable"),
        lambda backend: backend.start_container(spec()),
        lambda backend: backend.image_exists("tmpnb/tiny:latest"),
    ],
    ids=["list", "remove", "start", "image"],
)
@pytest.mark.parametrize("backend", [docker_backend, swarm_backend], ids=["docker", "swarm"])
def test_every_call_raises_backend_error(unreachable_docker, backend, call):
    with pytest.raises(BackendError):
        call(backend)


def test_copy_out_and_a_network_raise_backend_error(unreachable_docker, tmp_path):
    with pytest.raises(BackendError):
        docker_backend.copy_out("abc", path="/srv", destination=tmp_path)
    with pytest.raises(BackendError):
        docker_backend.ensure_network("tmpnb-unreachable-net", pool="p", internal=True)


@pytest.mark.django_db
def test_a_heartbeat_tick_survives(unreachable_docker, fake_proxy):
    PoolFactory(capacity=1)
    assert len(upkeep.heartbeat()) == 1  # the pool is still filled from the rows


@pytest.mark.django_db
def test_a_kill_ends_the_row_and_its_session(unreachable_docker, fake_proxy):
    container = ContainerFactory(state=Container.State.ASSIGNED)
    assert ending.kill_containers([container], by="organiser") == 1
    assert Container.objects.get(pk=container.pk).state == Container.State.GONE


@pytest.mark.django_db(transaction=True)
def test_a_spawn_that_cannot_reach_docker_fails_cleanly_and_backs_off(unreachable_docker, fake_proxy):
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    container = spawning.spawn_container(row.pk)
    assert container.state == Container.State.FAILED
    pool.refresh_from_db()
    assert pool.failure_streak == 1 and pool.next_spawn_at is not None
    assert Event.objects.filter(kind=Event.Kind.FAILURE, container=container).exists()


def test_waiting_for_a_docker_slot_is_bounded(settings):
    """Celery's time limits do nothing in the threads pool: every wait of a
    task has its own bound, the wait for one of TMPNB_MAX_DOCK_WORKERS too."""
    settings.TMPNB_MAX_DOCK_WORKERS = 1
    settings.DOCKER_TIMEOUT = 1
    slots = _docker_slots(1)
    assert slots.acquire(timeout=5)  # another call holds the only slot
    try:
        with pytest.raises(BackendError, match="TMPNB_MAX_DOCK_WORKERS"):
            docker_backend.remove_container("tmpnb-unreachable")
    finally:
        slots.release()
