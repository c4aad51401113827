"""Notebooks reach nothing private (pool/netguard.py), tested from inside a real
notebook container against test hosts of our own:

- a network namespace behind a veth pair stands for the internet
  (198.51.100.2, a documentation address) and for a cloud's metadata service
  (169.254.169.254); the host routes both to the veth, never further;
- a Redis and a proxy whose API listen on every host address, as a careless
  set-up would have them.
"""

import secrets
import subprocess
import sys

import docker
import pytest
import requests
from django.conf import settings

from pool import netguard
from pool.models import Event
from pool.services import network as guard
from tests import stack
from tests.pool.test_spawning import spawn_one

INTERNET = "198.51.100.2"
METADATA = "169.254.169.254"


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check).stdout


@pytest.fixture
def test_hosts(tmp_path):
    """A web server at INTERNET and METADATA, in a namespace of its own."""
    tag = secrets.token_hex(3)
    namespace, host_side, far_side = f"tnbtest-{tag}", f"tnbh{tag}", f"tnbn{tag}"
    (tmp_path / "index.html").write_text("test host\n")
    server = None
    try:
        ip("netns", "add", namespace)
        ip("link", "add", host_side, "type", "veth", "peer", "name", far_side)
        ip("link", "set", far_side, "netns", namespace)
        ip("addr", "add", "198.51.100.1/30", "dev", host_side)
        ip("addr", "add", "169.254.169.253/30", "dev", host_side)
        ip("link", "set", host_side, "up")
        ip("-n", namespace, "addr", "add", f"{INTERNET}/30", "dev", far_side)
        ip("-n", namespace, "addr", "add", f"{METADATA}/30", "dev", far_side)
        ip("-n", namespace, "link", "set", far_side, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        # Both addresses go to our veth: no traffic of this test leaves the machine.
        for address in (INTERNET, METADATA):
            assert f"dev {host_side}" in ip("route", "get", address), ip("route", "get", address)
        server = stack.Process(
            "test-host", ["ip", "netns", "exec", namespace, sys.executable, "-m", "http.server", "--bind", "0.0.0.0", "--directory", tmp_path, "80"]
        ).start()
        stack.wait_for(lambda: requests.get(f"http://{METADATA}/", timeout=1).ok, 15, "the test host")
        yield
    finally:
        if server:
            server.stop()
        ip("netns", "del", namespace, check=False)  # takes the veth pair with it
        ip("link", "del", host_side, check=False)


@pytest.fixture
def open_services(log_dir, web_port):
    """A Redis and a proxy API bound to every address of the host."""
    redis_port = stack.free_port()
    redis = stack.Process(
        "open-redis", ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--port", redis_port, "--save", "", "--appendonly", "no"], log_dir=log_dir
    ).start()
    proxy = None
    try:
        proxy = stack.Proxy(f"http://127.0.0.1:{web_port}", log_dir, api_ip="0.0.0.0").start()
        yield redis_port, proxy
    finally:
        redis.stop()
        if proxy:
            proxy.stop()


def run_in(container, command):
    client = docker.from_env()
    try:
        return client.containers.get(container.backend_id).exec_run(["sh", "-c", command]).output.decode(errors="replace")
    finally:
        client.close()


def test_notebooks_reach_the_internet_but_not_the_metadata_service_nor_the_hosts_services(clean_pools, test_hosts, open_services):
    redis_port, proxy = open_services
    container = spawn_one()
    client = docker.from_env()
    try:
        attrs = client.networks.get(f"tmpnb-{settings.TMPNB_INSTALLATION}").attrs
    finally:
        client.close()
    assert attrs["Options"]["com.docker.network.bridge.name"] == netguard.bridge_name()
    host = attrs["IPAM"]["Config"][0]["Gateway"]  # the host's address on the notebooks' network
    # With nc: the busybox wget of this image crashes.
    reach = {
        "internet": f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {INTERNET} 80",
        "metadata": f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {METADATA} 80",
        "redis": f"printf 'PING\\r\\n' | nc -w 3 {host} {redis_port}",
        "proxy API": f"printf 'GET /api/routes HTTP/1.0\\r\\nAuthorization: token {proxy.token}\\r\\n\\r\\n' | nc -w 3 {host} {proxy.api_port}",
    }
    answers = {"internet": "test host", "metadata": "test host", "redis": "+PONG", "proxy API": "200 OK"}

    def reachable():
        return {what: answers[what] in run_in(container, command) for what, command in reach.items()}

    # Without the guard everything answers: the checks below can tell.
    assert reachable() == dict.fromkeys(reach, True)
    try:
        assert guard.guard_network()
        assert guard.guard_network()  # again, at the next start: the same rules
        assert len(netguard.rules()) == 6
        assert reachable() == {"internet": True, "metadata": False, "redis": False, "proxy API": False}
        # Docker's DNS answers inside the container's own namespace, at 127.0.0.11.
        assert "nameserver 127.0.0.11" in run_in(container, "cat /etc/resolv.conf")
        assert "Address: " in run_in(container, f"nslookup {container.name} 127.0.0.11")
        # The host itself still reaches its services, and the proxy its notebooks.
        assert requests.get(f"http://{host}:{proxy.api_port}/api/routes", headers={"Authorization": f"token {proxy.token}"}, timeout=5).ok
        assert requests.get(container.target + container.url_for("/tree"), timeout=5).ok
    finally:
        guard.unguard_network()
    assert netguard.rules() == []
    assert reachable() == dict.fromkeys(reach, True)


def test_a_host_without_iptables_is_told_and_the_service_carries_on(db, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert guard.guard_network() is False
    [event] = Event.objects.filter(kind=Event.Kind.FAILURE)
    assert "notebook network not guarded: iptables is not installed" in event.message
    assert "TMPNB_NETWORK_GUARD=false" in event.message


def test_the_guard_can_be_turned_off(db, settings):
    settings.TMPNB_NETWORK_GUARD = False
    assert guard.guard_network() is False
    assert netguard.rules() == []
    assert not Event.objects.exists()


def test_an_internal_network_reaches_not_even_the_host(clean_pools, open_services):
    redis_port, _ = open_services
    container = spawn_one(internal_network=True)
    client = docker.from_env()
    try:
        attrs = client.networks.get(f"tmpnb-{settings.TMPNB_INSTALLATION}-internal").attrs
    finally:
        client.close()
    assert attrs["Options"]["com.docker.network.bridge.name"] == netguard.bridge_name(internal=True)
    ping_redis = f"printf 'PING\\r\\n' | nc -w 3 {attrs['IPAM']['Config'][0]['Gateway']} {redis_port}"
    assert "+PONG" in run_in(container, ping_redis)  # Docker's internal networks leave the host open
    try:
        assert guard.guard_network()
        assert "+PONG" not in run_in(container, ping_redis)
    finally:
        guard.unguard_network()
