"""dockerd restarted under a live pool: with live-restore the notebooks keep
running, and the service removes none of them while Docker is away.

The restarted engine is a private dockerd of this test (tests/dockerd.py;
the pool uses the host network), so the machine's engine and everything else
on it are never disturbed."""

import signal

import pytest

from pool.backends import docker as docker_backend
from pool.models import Container
from tests import dockerd
from tests.factories import TINY_IMAGE, PoolFactory
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.pool.test_spawning import HOST_NETWORK_COMMAND
from tests.stack import Browser


@pytest.fixture
def private_dockerd(tmp_path_factory, docker_images):
    with dockerd.private_dockerd(tmp_path_factory.mktemp("dockerd"), [TINY_IMAGE]) as engine:
        yield engine


def test_a_dockerd_restart_keeps_every_notebook_and_loses_no_session(live_stack, private_dockerd, settings):
    settings.DOCKER_HOST = private_dockerd.socket
    PoolFactory(capacity=2, host_network=True, command=HOST_NETWORK_COMMAND, redirect_uri="/")
    live_stack.start(DOCKER_HOST=private_dockerd.socket)
    wait_until(lambda: ready_count() == 2, what="2 ready containers")
    browser = Browser()
    page = browser.get(f"{live_stack.url}/", timeout=30)
    assert page.status_code == 200
    before = sorted(c.backend_id for c in docker_backend.list_containers())

    private_dockerd.stop(signal.SIGTERM, timeout=30)
    live_stack.wait_for_heartbeats()  # they meet no Docker: they must not take the notebooks for dead
    assert browser.get(page.url, timeout=5).status_code == 200
    private_dockerd.start()
    live_stack.wait_for_heartbeats()
    assert sorted(c.backend_id for c in docker_backend.list_containers()) == before
    assert Container.objects.live().count() == 2 and not Container.objects.filter(state=Container.State.GONE).exists()
    assert browser.get(f"{live_stack.url}/", timeout=30).url == page.url
    assert browser.get(page.url, timeout=5).status_code == 200
