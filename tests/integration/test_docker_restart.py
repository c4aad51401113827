"""dockerd restarted under a live pool: with live-restore the notebooks keep
running, and the service removes none of them while Docker is away.

The restarted engine is a private dockerd of this test (its own data root,
socket and bridge; the pool uses the host network), so the machine's engine
and everything else on it are never disturbed. (Not --bridge none: a dockerd
started so deletes the host's docker0, which the machine's engine owns.)"""

import secrets
import shutil
import signal
import subprocess

import docker
import pytest

from pool.backends import docker as docker_backend
from pool.models import Container
from tests.factories import TINY_IMAGE, PoolFactory
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.pool.test_spawning import HOST_NETWORK_COMMAND
from tests.stack import Browser, Process, wait_for


class PrivateDockerd(Process):
    def __init__(self, root, bridge):
        self.root = root
        self.socket = f"unix://{root}/docker.sock"
        args = [
            "dockerd",
            "--data-root",
            root / "data",
            "--exec-root",
            root / "exec",
            "-H",
            self.socket,
            "--pidfile",
            root / "dockerd.pid",
            "--bridge",
            bridge,
            "--iptables=false",
            "--ip-masq=false",
            "--live-restore",
        ]
        super().__init__("dockerd", args, log_dir=root)

    def start(self):
        super().start()
        wait_for(lambda: self.client().ping(), 30, "the private dockerd")
        return self

    def client(self):
        return docker.DockerClient(base_url=self.socket, timeout=10)

    def unmount_all(self):
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(self.root))]
        for point in sorted(points, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture
def private_dockerd(tmp_path_factory, docker_images):
    root = tmp_path_factory.mktemp("dockerd")
    bridge = f"tmpnbbr{secrets.token_hex(3)}"
    engine = PrivateDockerd(root, bridge)
    main = docker.from_env()
    try:
        for command in (["ip", "link", "add", bridge, "type", "bridge"], ["ip", "addr", "add", "10.215.91.1/24", "dev", bridge]):
            subprocess.run(command, check=True, capture_output=True)
        engine.start()
        private = engine.client()
        private.images.load(b"".join(main.images.get(TINY_IMAGE).save(named=True)))
        yield engine
        for container in engine.client().containers.list(all=True):
            container.remove(force=True)
    finally:
        main.close()
        engine.stop(signal.SIGTERM, timeout=30)
        engine.unmount_all()
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


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
