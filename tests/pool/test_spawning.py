"""Each container option reaches Docker (checked by inspecting the container)."""

import docker
import pytest
import requests
from django.conf import settings

from pool import dockerapi, services
from pool.models import Container
from tests.factories import PoolFactory

# Writable by any user, for a container that does not run as root.
TMP_COMMAND = (
    "sh -c 'mkdir -p /tmp/www{base_path} && echo user > /tmp/www{base_path}index.html"
    " && exec httpd -f -p {port} -h /tmp/www'"
)
HOST_NETWORK_COMMAND = (
    "sh -c 'mkdir -p /www{base_path} && echo host {base_path} > /www{base_path}index.html"
    " && exec httpd -f -p {ip}:{port} -h /www'"
)


@pytest.fixture
def inspect():
    client = docker.from_env()
    yield lambda container: client.api.inspect_container(container.docker_id)
    client.close()


def spawn_one(**options):
    pool = PoolFactory(capacity=1, **options)
    [row] = services.fill_pool(pool.pk)
    container = services.spawn_container(row.pk)
    assert container.state == Container.State.READY, container.error
    return container


def test_limits_user_mounts_and_extra_hosts_reach_docker(clean_pools, inspect, tmp_path):
    container = spawn_one(
        command=TMP_COMMAND, mem_limit="96m", cpu_shares=512, cpu_quota=50000, container_user="1000",
        host_directories=f"{tmp_path}:/data, {tmp_path}:/scratch:rw", extra_hosts="db.local:10.1.2.3",
    )
    attrs = inspect(container)
    host = attrs["HostConfig"]
    assert host["Memory"] == 96 * 1024 * 1024
    assert host["CpuShares"] == 512
    assert host["CpuQuota"] == 50000
    assert attrs["Config"]["User"] == "1000"
    assert sorted(host["Binds"]) == sorted([f"{tmp_path}:/data:ro", f"{tmp_path}:/scratch:rw"])
    assert host["ExtraHosts"] == ["db.local:10.1.2.3"]


def test_containers_are_hardened(clean_pools, inspect):
    host = inspect(spawn_one())["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["CapDrop"] == ["ALL"]
    assert host["PidsLimit"] == 256
    assert host["Memory"] == 64 * 1024 * 1024
    assert not [b for b in host["Binds"] or [] if "docker.sock" in b]


def test_the_command_template_is_filled_with_the_containers_own_values(clean_pools, inspect):
    container = spawn_one()
    args = " ".join(inspect(container)["Config"]["Cmd"])
    assert f"mkdir -p /www{container.base_path}" in args
    assert "httpd -f -p 8888" in args


def test_a_docker_network_is_joined(clean_pools, inspect):
    client = docker.from_env()
    network = client.networks.create(f"tmpnb-{settings.TMPNB_INSTALLATION}-net", labels=dockerapi.labels_for("net"))
    try:
        container = spawn_one(docker_network=network.name)
        assert list(inspect(container)["NetworkSettings"]["Networks"]) == [network.name]
        services.stop_all_containers()
    finally:
        network.remove()
        client.close()


def test_on_the_host_network_the_server_binds_its_own_port(clean_pools, inspect, proxy):
    container = spawn_one(host_network=True, command=HOST_NETWORK_COMMAND)
    attrs = inspect(container)
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    assert f"-p 127.0.0.1:{container.host_port}" in " ".join(attrs["Config"]["Cmd"])
    page = requests.get(f"{proxy.public_url}{container.base_path}", timeout=5)
    assert page.text.strip() == f"host {container.base_path}"


def test_tokens_can_be_turned_off_and_the_id_length_set(clean_pools):
    container = spawn_one(use_tokens=False, user_length=20)
    assert container.token == ""
    assert len(container.path_id) == 20
    assert container.url_for("/tree") == f"/user/{container.path_id}/tree"


def test_with_tokens_each_container_has_its_own(clean_pools):
    pool = PoolFactory(capacity=2)
    rows = services.fill_pool(pool.pk)
    assert len({row.token for row in rows}) == 2 and all(len(row.token) >= 32 for row in rows)
    assert all(len(row.path_id) == 12 for row in rows)


def test_static_files_are_copied_out_of_the_first_ready_container_and_served(clean_pools, settings, tmp_path, client):
    settings.TMPNB_STATIC_FILES = "/srv/static"
    settings.VAR_DIR = tmp_path
    command = (
        "sh -c 'mkdir -p /srv/static/css /www{base_path} && echo hello-static > /srv/static/css/site.css"
        " && echo ok > /www{base_path}index.html && exec httpd -f -p {port} -h /www'"
    )
    spawn_one(command=command)
    assert (tmp_path / "static_files" / "css" / "site.css").read_text() == "hello-static\n"
    response = client.get("/static/css/site.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"hello-static\n"
    assert client.get("/static/../secrets.env").status_code == 404


def test_without_static_files_configured_static_is_not_found(client, settings, db):
    settings.TMPNB_STATIC_FILES = None
    assert client.get("/static/anything.css").status_code == 404
