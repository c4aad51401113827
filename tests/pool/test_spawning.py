"""Each container option reaches Docker (checked by inspecting the container)."""

import secrets
import socket
import subprocess
import sys

import docker
import pytest
import requests
from django.conf import settings

from pool.backends import docker as docker_backend
from pool.backends.client import LABEL_INSTALLATION, labels_for
from pool.models import Container, Pool
from pool.services import ending, pools, spawning
from tests.factories import PoolFactory
from tests.stack import TINY_COMMAND, TINY_IMAGE, wait_for

# Writable by any user, for a container that does not run as root.
TMP_COMMAND = "sh -c 'mkdir -p /tmp/www{base_path} && echo user > /tmp/www{base_path}index.html && exec httpd -f -p {port} -h /tmp/www'"
HOST_NETWORK_COMMAND = "sh -c 'mkdir -p /www{base_path} && echo host {base_path} > /www{base_path}index.html && exec httpd -f -p {ip}:{port} -h /www'"


@pytest.fixture
def inspect():
    client = docker.from_env()
    yield lambda container: client.api.inspect_container(container.backend_id)
    client.close()


def spawn_one(**options):
    pool = PoolFactory(capacity=1, **options)
    [row] = pools.fill_pool(pool.pk)
    container = spawning.spawn_container(row.pk)
    assert container.state == Container.State.READY, container.error
    return container


def test_limits_user_mounts_and_extra_hosts_reach_docker(clean_pools, inspect, tmp_path):
    container = spawn_one(
        command=TMP_COMMAND,
        redirect_uri="/",
        mem_limit="96m",
        cpu_shares=512,
        cpu_quota=50000,
        container_user="1000",
        host_directories=f"{tmp_path}:/data, {tmp_path}:/scratch:rw",
        extra_hosts="db.local:10.1.2.3",
    )
    attrs = inspect(container)
    host = attrs["HostConfig"]
    assert host["Memory"] == 96 * 1024 * 1024
    assert host["CpuShares"] == 512
    assert host["CpuQuota"] == 50000
    assert attrs["Config"]["User"] == "1000"
    assert sorted(host["Binds"]) == sorted([f"{tmp_path}:/data:ro", f"{tmp_path}:/scratch:rw"])
    assert host["ExtraHosts"] == ["db.local:10.1.2.3"]


def test_a_notebook_of_the_default_pool_gets_one_core_at_most(clean_pools, inspect, settings):
    # The settings' own default pool, with the tiny image so that it starts quickly.
    settings.TMPNB_DEFAULT_POOL = {**settings.TMPNB_DEFAULT_POOL, "image": TINY_IMAGE, "command": TINY_COMMAND, "redirect_uri": "/tree", "capacity": 1}
    pool, _ = pools.init_default_pool()
    [row] = pools.fill_pool(pool.pk)
    container = spawning.spawn_container(row.pk)
    assert container.state == Container.State.READY, container.error
    host = inspect(container)["HostConfig"]
    assert host["CpuQuota"] == 100_000 and host["CpuPeriod"] in (0, 100_000)  # 0: Docker's period, 100 ms


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
    network = client.networks.create(f"tmpnb-{settings.TMPNB_INSTALLATION}-net", labels=labels_for("net"))
    try:
        container = spawn_one(docker_network=network.name)
        assert list(inspect(container)["NetworkSettings"]["Networks"]) == [network.name]
        ending.stop_all_containers()
    finally:
        docker_backend.remove_networks()  # it carries this installation's label
        client.close()


def test_the_proxy_reaches_a_container_at_its_address_on_the_installations_network(clean_pools, inspect, proxy):
    container = spawn_one()
    attrs = inspect(container)
    network = f"tmpnb-{settings.TMPNB_INSTALLATION}"
    assert not attrs["HostConfig"]["PortBindings"]  # no port on the host, no docker-proxy
    assert list(attrs["NetworkSettings"]["Networks"]) == [network]
    assert container.target == f"http://{attrs['NetworkSettings']['Networks'][network]['IPAddress']}:8888"
    assert proxy.routes()[container.route_path]["target"] == container.target
    page = requests.get(f"{proxy.notebook_url}{container.url_for('/tree')}", timeout=5)
    assert page.text.strip() == f"tree {container.base_path}"
    client = docker.from_env()
    try:
        assert client.networks.get(network).attrs["Labels"][LABEL_INSTALLATION] == settings.TMPNB_INSTALLATION
        ending.stop_all_containers()
        assert not [n for n in client.networks.list(names=[network]) if n.name == network]
    finally:
        client.close()


def test_a_machine_wide_http_proxy_setting_does_not_take_the_spawns_requests(clean_pools, proxy, machine_http_proxy):
    """The readiness poll reaches the container and the route reaches the
    proxy directly, whatever HTTP_PROXY the machine has (one answering nothing here)."""
    with machine_http_proxy():  # the tests' own requests (proxy.routes()) go on without it
        container = spawn_one()
    assert proxy.routes()[container.route_path]["target"] == container.target


def test_published_ports_stay_an_option(clean_pools, inspect, proxy, settings):
    settings.TMPNB_ROUTE_TO = "published"
    container = spawn_one()
    attrs = inspect(container)
    [binding] = attrs["HostConfig"]["PortBindings"]["8888/tcp"]
    assert binding["HostIp"] == "127.0.0.1"
    assert list(attrs["NetworkSettings"]["Networks"]) == ["bridge"]
    assert container.target == f"http://127.0.0.1:{attrs['NetworkSettings']['Ports']['8888/tcp'][0]['HostPort']}"
    page = requests.get(f"{proxy.notebook_url}{container.url_for('/tree')}", timeout=5)
    assert page.text.strip() == f"tree {container.base_path}"


# The base path answers at once; the landing page only a second later, as a
# server that answers before its first page is ready to render.
SLOW_LANDING_COMMAND = (
    "sh -c 'mkdir -p /www{base_path} && echo container {base_path} > /www{base_path}index.html;"
    " (sleep 1.5 && echo tree {base_path} > /www{base_path}tree) & exec httpd -f -p {port} -h /www'"
)


def test_a_container_is_ready_once_the_page_a_visitor_lands_on_answers(clean_pools):
    container = spawn_one(command=SLOW_LANDING_COMMAND)
    page = requests.get(f"{container.target}{container.url_for(container.pool.redirect_uri)}", timeout=5)
    assert page.status_code == 200
    assert page.text.strip() == f"tree {container.base_path}"


def test_a_landing_page_that_never_answers_fails_the_spawn(clean_pools, settings):
    settings.TMPNB_SPAWN_TIMEOUT = 2
    pool = PoolFactory(capacity=1, redirect_uri="/nowhere")
    [row] = pools.fill_pool(pool.pk)
    container = spawning.spawn_container(row.pk)
    assert container.state == Container.State.FAILED
    assert f"did not answer 200 on {container.target}{container.url_for('/nowhere')}" in container.error
    assert "(HTTP 404)" in container.error


def test_on_the_host_network_the_server_binds_its_own_port(clean_pools, inspect, proxy):
    container = spawn_one(host_network=True, command=HOST_NETWORK_COMMAND, redirect_uri="/")
    attrs = inspect(container)
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    assert f"-p 127.0.0.1:{container.host_port}" in " ".join(attrs["Config"]["Cmd"])
    page = requests.get(f"{proxy.notebook_url}{container.base_path}", timeout=5)
    assert page.text.strip() == f"host {container.base_path}"


def test_tokens_can_be_turned_off_and_the_id_length_set(clean_pools):
    container = spawn_one(use_tokens=False, user_length=20)
    assert container.token == ""
    assert len(container.path_id) == 20
    assert container.url_for("/tree") == f"/user/{container.path_id}/tree"


def test_with_tokens_each_container_has_its_own(clean_pools):
    pool = PoolFactory(capacity=2)
    rows = pools.fill_pool(pool.pk)
    assert len({row.token for row in rows}) == 2 and all(len(row.token) >= 32 for row in rows)
    assert all(len(row.path_id) == 12 for row in rows)


def test_static_files_are_copied_out_of_the_first_container_and_served_on_the_notebooks_origin_only(clean_pools, settings, tmp_path, client):
    settings.TMPNB_STATIC_FILES = "/srv/static"
    settings.VAR_DIR = tmp_path
    command = (
        "sh -c 'mkdir -p /srv/static/css /www{base_path} && echo hello-static > /srv/static/css/site.css"
        " && echo ok > /www{base_path}index.html && exec httpd -f -p {port} -h /www'"
    )
    spawn_one(command=command, redirect_uri="/")
    assert (tmp_path / "static_files" / "css" / "site.css").read_text() == "hello-static\n"
    notebooks = {"HTTP_HOST": f"testserver:{settings.TMPNB_NOTEBOOK_PORT}"}
    response = client.get("/static/css/site.css", **notebooks)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"hello-static\n"
    assert client.get("/static/../secrets.env", **notebooks).status_code == 404
    # Never on the origin of the admin and the participants' pages.
    assert client.get("/static/css/site.css").status_code == 404


def test_without_static_files_configured_static_is_not_found(client, settings, db):
    settings.TMPNB_STATIC_FILES = None
    assert client.get("/static/anything.css", HTTP_HOST=f"testserver:{settings.TMPNB_NOTEBOOK_PORT}").status_code == 404


@pytest.fixture
def outside_host(tmp_path):
    """A web server on a test host of our own, in a network namespace behind
    the host: what "the network" is for a notebook that should not reach it."""
    name = f"tmpnb{secrets.token_hex(3)}"
    host_ip, outside_ip = "10.213.7.1", "10.213.7.2"
    commands = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", f"{name}h", "type", "veth", "peer", "name", f"{name}n"],
        ["ip", "link", "set", f"{name}n", "netns", name],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", f"{name}h"],
        ["ip", "link", "set", f"{name}h", "up"],
        ["ip", "netns", "exec", name, "ip", "addr", "add", f"{outside_ip}/30", "dev", f"{name}n"],
        ["ip", "netns", "exec", name, "ip", "link", "set", f"{name}n", "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
        ["ip", "netns", "exec", name, "ip", "route", "add", "default", "via", host_ip],
    ]
    server = None
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-m", "http.server", "8000", "--bind", outside_ip],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: socket.create_connection((outside_ip, 8000), 0.5).close() or True, 15, "the outside test host")
        yield outside_ip
    finally:
        if server:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", f"{name}h"], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def fetch_from(client, container, ip):
    probe = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8000 | head -1"
    return client.containers.get(container.backend_id).exec_run(["sh", "-c", probe]).output.decode()


def test_an_internal_network_cuts_notebooks_off_but_the_proxy_reaches_them(clean_pools, inspect, proxy, outside_host):
    client = docker.from_env()
    network_name = f"tmpnb-{settings.TMPNB_INSTALLATION}-internal"
    try:
        ordinary = spawn_one()
        assert "200 OK" in fetch_from(client, ordinary, outside_host)  # the test host is reachable at all
        Pool.objects.filter(pk=ordinary.pool_id).update(capacity=0)
        cut_off = spawn_one(name="cut-off", internal_network=True)
        assert client.networks.get(network_name).attrs["Internal"] is True
        attrs = inspect(cut_off)
        assert list(attrs["NetworkSettings"]["Networks"]) == [network_name]
        assert not attrs["HostConfig"]["PortBindings"]
        assert "200 OK" not in fetch_from(client, cut_off, outside_host)
        page = requests.get(f"{proxy.notebook_url}{cut_off.base_path}", timeout=5)
        assert page.text.strip() == f"container {cut_off.base_path}"
    finally:
        ending.stop_all_containers()
        for network in client.networks.list(names=[network_name]):
            network.remove()
        client.close()
