"""The Docker wrapper against the real engine."""

import docker
import pytest
import requests
from django.conf import settings

from pool.backends import docker as docker_backend
from pool.backends.base import ContainerSpec
from pool.backends.client import LABEL_INSTALLATION, LABEL_POOL, DockerError, labels_for
from tests.factories import TINY_IMAGE
from tests.stack import wait_for

pytestmark = pytest.mark.integration


def spec(name, **overrides):
    values = dict(
        name=f"tmpnb-{settings.TMPNB_INSTALLATION}-api-{name}",
        image=TINY_IMAGE,
        command="sh -c 'mkdir -p /www/user/x/ && echo hi > /www/user/x/index.html && exec httpd -f -p 8888 -h /www'",
        pool="api",
        container_port=8888,
        host_ip="127.0.0.1",
        mem_limit="64m",
        cpu_shares=256,
    )
    values.update(overrides)
    return ContainerSpec(**values)


@pytest.fixture
def raw_docker(docker_engine):
    client = docker.from_env()
    yield client
    client.close()


def test_a_started_container_is_labelled_limited_and_published_on_loopback(docker_images, raw_docker):
    started = docker_backend.start_container(spec("one"))
    try:
        attrs = raw_docker.api.inspect_container(started.backend_id)
        assert attrs["Config"]["Labels"][LABEL_INSTALLATION] == settings.TMPNB_INSTALLATION
        assert attrs["Config"]["Labels"][LABEL_POOL] == "api"
        assert attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert attrs["HostConfig"]["CpuShares"] == 256
        assert attrs["HostConfig"]["PortBindings"]["8888/tcp"][0]["HostIp"] == "127.0.0.1"
        assert started.host_ip == "127.0.0.1"
        # Refused at once until httpd listens: wait by the clock, not by a count of tries.
        url = f"http://127.0.0.1:{started.host_port}/user/x/"
        wait_for(lambda: requests.get(url, timeout=1).ok, 30, "the started container")
        assert requests.get(url, timeout=5).text.strip() == "hi"
    finally:
        docker_backend.remove_container(started.backend_id)
    assert not [c for c in docker_backend.list_containers() if c.backend_id == started.backend_id]


def test_listing_sees_only_this_installation(docker_images, raw_docker):
    ours = docker_backend.start_container(spec("listed"))
    stranger = raw_docker.containers.run(TINY_IMAGE, "sleep 60", detach=True, labels={"tmpnb.pool": "someone-else"})
    try:
        listed = docker_backend.list_containers()
        assert [c.backend_id for c in listed] == [ours.backend_id]
        assert listed[0].pool == "api" and listed[0].is_running
    finally:
        stranger.remove(force=True)
        docker_backend.remove_container(ours.backend_id)


def test_disk_usage_is_what_each_of_our_running_containers_wrote(docker_images, raw_docker):
    ours = docker_backend.start_container(spec("disk"))
    stranger = raw_docker.containers.run(TINY_IMAGE, "sh -c 'dd if=/dev/zero of=/big bs=1M count=2 && sleep 60'", detach=True)
    try:
        before = docker_backend.disk_usage()[spec("disk").name]
        raw_docker.containers.get(ours.backend_id).exec_run(["dd", "if=/dev/zero", "of=/tmp/big", "bs=1M", "count=3"])
        usage = docker_backend.disk_usage()
        assert list(usage) == [spec("disk").name]  # never a container of someone else
        assert usage[spec("disk").name] - before >= 3 * 1024 * 1024
    finally:
        stranger.remove(force=True)
        docker_backend.remove_container(ours.backend_id)


def test_removing_a_container_that_is_gone_is_not_an_error(docker_images, raw_docker):
    started = docker_backend.start_container(spec("gone"))
    docker_backend.remove_container(started.backend_id)
    with pytest.raises(docker.errors.NotFound):  # what Docker itself answers now
        raw_docker.api.remove_container(started.backend_id, force=True)
    docker_backend.remove_container(started.backend_id)  # done already: no error
    docker_backend.remove_container("tmpnb-no-such-container")  # never was
    assert docker_backend.list_containers() == []


def test_a_missing_image_is_a_clear_error():
    with pytest.raises(DockerError, match="image tmpnb/no-such-image:1 is not on this host"):
        docker_backend.start_container(spec("noimage", image="tmpnb/no-such-image:1"))
    assert docker_backend.list_containers() == []


def test_a_container_not_published_answers_at_its_address_on_our_network(docker_images, raw_docker):
    network = f"tmpnb-{settings.TMPNB_INSTALLATION}-api"
    docker_backend.ensure_network(network, pool="api")
    docker_backend.ensure_network(network, pool="api")  # made once
    started = docker_backend.start_container(spec("unpublished", network=network, publish=False))
    try:
        attrs = raw_docker.api.inspect_container(started.backend_id)
        assert not attrs["HostConfig"]["PortBindings"]
        assert list(attrs["NetworkSettings"]["Networks"]) == [network]
        assert started.host_port is None
        assert started.network_ip == attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        assert started.address("published") == started.address("container") == (started.network_ip, 8888)
        url = f"http://{started.network_ip}:8888/user/x/"
        wait_for(lambda: requests.get(url, timeout=1).ok, 30, "the started container")
        assert requests.get(url, timeout=5).text.strip() == "hi"
    finally:
        docker_backend.remove_container(started.backend_id)
        docker_backend.remove_networks()
    assert not raw_docker.networks.list(names=[network])


@pytest.mark.parametrize("refusal", ["409 same name", "403 same bridge name"])
def test_a_network_made_by_another_process_between_look_and_create_is_taken_as_made(raw_docker, monkeypatch, refusal):
    """Two workers spawning at once both look, find no network, and create it:
    Docker refuses the second with 409 (the name is taken) or, when both
    creates were in flight together, 403 (the bridge name is taken); either
    way the network is there."""
    network = f"tmpnb-{settings.TMPNB_INSTALLATION}-race"
    raw_docker.networks.create(network, labels=labels_for("api"), check_duplicate=True)  # the other worker's
    looks = []
    real_list = docker.models.networks.NetworkCollection.list

    def list_after_our_first_look(self, **kwargs):
        looks.append(kwargs)
        return [] if len(looks) == 1 else real_list(self, **kwargs)  # our look came first: it found nothing

    def create_refused_for_the_bridge(self, name, **kwargs):
        response = requests.Response()
        response.status_code = 403
        raise docker.errors.APIError("networks have same bridge name", response=response)

    try:
        monkeypatch.setattr(docker.models.networks.NetworkCollection, "list", list_after_our_first_look)
        if refusal.startswith("403"):
            monkeypatch.setattr(docker.models.networks.NetworkCollection, "create", create_refused_for_the_bridge)
        docker_backend.ensure_network(network, pool="api")
        monkeypatch.undo()
        assert len(looks) == 2  # it looked again after the refusal
        assert [n.name for n in raw_docker.networks.list(names=[network])] == [network]
    finally:
        monkeypatch.undo()
        docker_backend.remove_networks()


def test_a_refused_network_that_is_not_there_is_an_error(raw_docker, monkeypatch):
    def create_refused(self, name, **kwargs):
        response = requests.Response()
        response.status_code = 403
        raise docker.errors.APIError("networks have same bridge name", response=response)

    monkeypatch.setattr(docker.models.networks.NetworkCollection, "create", create_refused)
    with pytest.raises(DockerError, match="creating network"):
        docker_backend.ensure_network(f"tmpnb-{settings.TMPNB_INSTALLATION}-refused", pool="api")


def test_a_published_container_has_both_addresses(docker_images, raw_docker):
    started = docker_backend.start_container(spec("both"))
    try:
        bridge = raw_docker.api.inspect_container(started.backend_id)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        assert started.address("published") == ("127.0.0.1", started.host_port)
        assert started.address("container") == (bridge, 8888)
    finally:
        docker_backend.remove_container(started.backend_id)
