"""Notebooks reach nothing private (pool/netguard.py), tested from inside a real
notebook container against test hosts of our own:

- a network namespace behind a veth pair stands for the internet
  (198.51.100.2, a documentation address), a cloud's metadata service
  (169.254.169.254), a database on the site's private network (10.213.77.2)
  and a host on a shared range (100.64.213.2); the host routes them to the
  veth, never further;
- a second notebook, for traffic between notebooks;
- a Redis and a proxy whose API listen on every host address, as a careless
  set-up would have them.
"""

import secrets
import shutil
import subprocess
import sys

import docker
import pytest
import requests
from django.conf import settings

from pool import netguard
from pool.models import Event
from pool.services import network as guard, pools, spawning
from tests import stack
from tests.factories import PoolFactory
from tests.pool.test_spawning import spawn_one

INTERNET = "198.51.100.2"
METADATA = "169.254.169.254"
PRIVATE = "10.213.77.2"
SHARED = "100.64.213.2"
# The test host's addresses, and the host side's on the same /30.
TEST_HOSTS = {INTERNET: "198.51.100.1", METADATA: "169.254.169.253", PRIVATE: "10.213.77.1", SHARED: "100.64.213.1"}


@pytest.fixture
def guard_on(settings):
    settings.TMPNB_NETWORK_GUARD = True
    yield settings
    guard.unguard_network()


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check).stdout


@pytest.fixture
def test_hosts(tmp_path):
    """A web server at each of TEST_HOSTS (ports 80 and 53), in a namespace of its own."""
    tag = secrets.token_hex(3)
    namespace, host_side, far_side = f"tnbtest-{tag}", f"tnbh{tag}", f"tnbn{tag}"
    (tmp_path / "index.html").write_text("test host\n")
    servers = []
    try:
        ip("netns", "add", namespace)
        ip("link", "add", host_side, "type", "veth", "peer", "name", far_side)
        ip("link", "set", far_side, "netns", namespace)
        for far, near in TEST_HOSTS.items():
            ip("addr", "add", f"{near}/30", "dev", host_side)
            ip("-n", namespace, "addr", "add", f"{far}/30", "dev", far_side)
        ip("link", "set", host_side, "up")
        ip("-n", namespace, "link", "set", far_side, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        # Every address goes to our veth: no traffic of this test leaves the machine.
        for address in TEST_HOSTS:
            assert f"dev {host_side}" in ip("route", "get", address), ip("route", "get", address)
        # Port 53 stands for a resolver (the guard lets resolvers through on it alone).
        servers = [
            stack.Process(
                f"test-host-{port}", ["ip", "netns", "exec", namespace, sys.executable, "-m", "http.server", "--bind", "0.0.0.0", "--directory", tmp_path, port]
            ).start()
            for port in ("80", "53")
        ]
        for port in ("80", "53"):
            stack.wait_for(lambda: requests.get(f"http://{METADATA}:{port}/", timeout=1).ok, 15, "the test host")
        yield
    finally:
        for server in servers:
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


def wget(address, port=80):
    # With nc: the busybox wget of this image crashes.
    return f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {address} {port}"


def notebook_web_server(container):
    """A web server of the participant's own in their container, for the others to reach."""
    run_in(container, "mkdir -p /tmp/www && echo peer page > /tmp/www/index.html && (httpd -p 8080 -h /tmp/www || busybox httpd -p 8080 -h /tmp/www)")
    client = docker.from_env()
    try:
        attrs = client.containers.get(container.backend_id).attrs
    finally:
        client.close()
    return next(iter(attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]


def spawn_two():
    pool = PoolFactory(capacity=2)
    return [spawning.spawn_container(row.pk) for row in pools.fill_pool(pool.pk)]


def reachable(container, checks):
    """Which of ``checks`` (name: (command, what its answer holds)) the container reaches."""
    return {name: expected in run_in(container, command) for name, (command, expected) in checks.items()}


def test_notebooks_reach_the_internet_but_nothing_private_nor_the_hosts_services_nor_each_other(clean_pools, test_hosts, open_services, guard_on):
    redis_port, proxy = open_services
    container, other = spawn_two()
    client = docker.from_env()
    try:
        attrs = client.networks.get(f"tmpnb-{settings.TMPNB_INSTALLATION}").attrs
    finally:
        client.close()
    assert attrs["Options"]["com.docker.network.bridge.name"] == netguard.bridge_name()
    host = attrs["IPAM"]["Config"][0]["Gateway"]  # the host's address on the notebooks' network
    checks = {
        "internet": (wget(INTERNET), "test host"),
        "metadata": (wget(METADATA), "test host"),
        "private": (wget(PRIVATE), "test host"),
        "shared": (wget(SHARED), "test host"),
        "another notebook": (wget(notebook_web_server(other), 8080), "peer page"),
        "redis": (f"printf 'PING\\r\\n' | nc -w 3 {host} {redis_port}", "+PONG"),
        "proxy API": (f"printf 'GET /api/routes HTTP/1.0\\r\\nAuthorization: token {proxy.token}\\r\\n\\r\\n' | nc -w 3 {host} {proxy.api_port}", "200 OK"),
    }
    # Without the guard everything answers: the checks below can tell.
    assert reachable(container, checks) == dict.fromkeys(checks, True)
    assert guard.guard_network()
    assert guard.guard_network()  # again, at the next start: the same rules
    assert netguard.missing(guard.guard_policy()) == []
    assert reachable(container, checks) == {name: name == "internet" for name in checks}
    # Docker's DNS answers inside the container's own namespace, at 127.0.0.11.
    assert "nameserver 127.0.0.11" in run_in(container, "cat /etc/resolv.conf")
    assert "Address: " in run_in(container, f"nslookup {container.name} 127.0.0.11")
    # The host itself still reaches its services, and the proxy its notebooks.
    assert requests.get(f"http://{host}:{proxy.api_port}/api/routes", headers={"Authorization": f"token {proxy.token}"}, timeout=5).ok
    assert requests.get(container.target + container.url_for("/tree"), timeout=5).ok
    guard.unguard_network()
    assert netguard.rules() == []
    assert reachable(container, checks) == dict.fromkeys(checks, True)


def test_the_organiser_lets_through_a_range_the_resolvers_and_the_notebooks_to_each_other(clean_pools, test_hosts, guard_on, monkeypatch, tmp_path):
    container, other = spawn_two()
    # A resolver in a denied range, as a cloud has it; the rest of that host stays shut.
    (tmp_path / "resolv.conf").write_text(f"nameserver 127.0.0.53\nnameserver {PRIVATE}\n")
    monkeypatch.setattr(guard, "RESOLV_CONF", tmp_path / "resolv.conf")
    guard_on.TMPNB_GUARD_ALLOW = [f"{SHARED}/32"]
    guard_on.TMPNB_GUARD_PEERS = True
    checks = {
        "shared, allowed": (wget(SHARED), "test host"),
        "the resolver, on 53": (wget(PRIVATE, 53), "test host"),
        "the resolver, on 80": (wget(PRIVATE), "test host"),
        "metadata": (wget(METADATA), "test host"),
        "another notebook": (wget(notebook_web_server(other), 8080), "peer page"),
    }
    assert guard.guard_network()
    assert reachable(container, checks) == {
        "shared, allowed": True,
        "the resolver, on 53": True,
        "the resolver, on 80": False,
        "metadata": False,
        "another notebook": True,
    }


def test_a_heartbeat_puts_back_a_guard_a_firewall_reload_took_away_and_says_so(clean_pools, test_hosts, guard_on):
    container = spawn_one()
    assert guard.guard_network()
    assert "test host" not in run_in(container, wget(METADATA))
    guard.check_guard()
    assert not Event.objects.filter(kind=Event.Kind.FAILURE).exists()  # nothing was missing
    # A firewall reload (firewalld, ufw, iptables-restore) drops the rules.
    netguard.remove()
    assert "test host" in run_in(container, wget(METADATA))
    guard.check_guard()
    assert "test host" not in run_in(container, wget(METADATA))
    [event] = Event.objects.filter(kind=Event.Kind.FAILURE)
    assert "was not in place" in event.message and "put back" in event.message
    [warning] = guard.guard_warnings()
    assert "the network guard was gone at" in warning
    # One chain emptied by hand is found too.
    forward_chain = netguard.rules()[0].split()[1]
    subprocess.run(["iptables", "-w", "5", "-F", forward_chain], check=True, timeout=10)
    guard.check_guard()
    assert netguard.missing(guard.guard_policy()) == []
    assert Event.objects.filter(kind=Event.Kind.FAILURE).count() == 2


def test_a_host_without_iptables_is_told_once_and_the_service_carries_on(db, monkeypatch, tmp_path, guard_on):
    # A host with its core tools (the guard reads the resolvers with cat) and no iptables.
    (tmp_path / "cat").symlink_to(shutil.which("cat"))
    with monkeypatch.context() as without_iptables:
        without_iptables.setenv("PATH", str(tmp_path))
        assert guard.guard_network() is False
        guard.check_guard()  # every heartbeat finds the same: it is said once
    [event] = Event.objects.filter(kind=Event.Kind.FAILURE)
    assert "notebook network not guarded: iptables is not installed" in event.message
    assert "TMPNB_NETWORK_GUARD=false" in event.message
    [warning] = guard.guard_warnings()
    assert "iptables is not installed" in warning


def test_the_guard_can_be_turned_off(db, settings):
    settings.TMPNB_NETWORK_GUARD = False
    assert guard.guard_network() is False
    guard.check_guard()
    assert netguard.rules() == []
    assert not Event.objects.exists()


def test_an_internal_network_reaches_not_even_the_host(clean_pools, open_services, guard_on):
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
    assert guard.guard_network()
    assert "+PONG" not in run_in(container, ping_redis)


def test_the_worker_guards_the_network_as_it_starts_and_its_heartbeat_puts_the_guard_back(live_stack):
    policy = guard.guard_policy()  # the worker's: the same settings and host
    live_stack.start(web_workers=1, TMPNB_NETWORK_GUARD="true")
    try:
        stack.wait_for(lambda: netguard.missing(policy) == [], 60, "the worker's guard")
        netguard.remove()  # a firewall reload
        stack.wait_for(lambda: netguard.missing(policy) == [], 30, "the heartbeat's guard")
        stack.wait_for(lambda: Event.objects.filter(kind=Event.Kind.FAILURE, message__contains="put back").exists(), 10, "the event")
    finally:
        live_stack.stop()
        netguard.remove()
