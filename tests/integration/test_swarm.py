"""The service on a real three-node Swarm (tests/swarm.py): notebooks spread
over the nodes, visitors reach them through the proxy at their node's address,
a restart of the manager ends nothing, materials and saved work move through
each node's own engine, the disk limit holds on a worker node, participants on the worker nodes each have an origin
of their own, the network guard holds on every node (an internal network
there reaches nothing), and a node lost for good
ends its sessions and is replaced on the others.

The lost-node test cuts the third node off for the rest of the session, so it
comes last."""

import io
import os
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import docker
import pytest
import requests

from pool import netguard, origins
from pool.backends import get_backend
from pool.backends.base import BackendError, ContainerSpec
from pool.models import Container, Event, GuardCheck, Pool, Session
from pool.services import network, pools
from proxyapi import get_proxy
from tests.conftest import swarm_environment
from tests.factories import PoolFactory
from tests.integration.test_browser import CHROMIUM, open_browser  # noqa: F401 (a fixture)
from tests.integration.test_origins import origin_each, participant_folder, participants_cannot_reach_past_their_origins, received_from  # noqa: F401 (a fixture)
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.integration.test_snapshots import downloaded, ended_page_with_work
from tests.pool.test_materials_files import write_tree
from tests.stack import TINY_IMAGE, TINY_WORK_COMMAND, Browser

pytestmark = pytest.mark.swarm

CAPACITY = 6
COPY_TIMEOUT = 8  # seconds, as TMPNB_SNAPSHOT_TIMEOUT bounds a copy of saved work


def nodes_of(containers):
    return {c.node for c in containers}


def start_full_pool(stack, lab):
    PoolFactory(capacity=CAPACITY)
    started = time.monotonic()
    stack.start()
    wait_until(lambda: ready_count() == CAPACITY, timeout=60, what=f"{CAPACITY} ready containers")
    print(f"\n{CAPACITY} notebooks ready on the Swarm in {time.monotonic() - started:.1f}s")
    return {lab.hostname(n): lab.address(n) for n in (1, 2, 3)}


def test_the_pool_spreads_over_the_three_nodes_and_a_visitor_reaches_the_third(swarm_stack, on_swarm):
    nodes = start_full_pool(swarm_stack, on_swarm)
    ready = list(Container.objects.ready())
    assert nodes_of(ready) == set(nodes)
    assert all(c.host_ip == nodes[c.node] for c in ready)
    third = on_swarm.hostname(3)
    # New visitors until one is handed the notebook that runs on the third node.
    for _ in range(CAPACITY):
        with Browser() as browser:
            response = browser.get(f"{swarm_stack.url}/", timeout=30)
        session = Session.objects.order_by("-started_at").first()
        if session.container.node == third:
            break
    assert response.status_code == 200
    assert response.text.strip() == f"tree {session.container.base_path}"
    assert session.container.target.startswith(f"http://{on_swarm.address(3)}:")


def test_a_paused_node_gets_no_new_notebooks_and_keeps_its_sessions(swarm_stack, on_swarm):
    start_full_pool(swarm_stack, on_swarm)
    second = on_swarm.hostname(2)
    for _ in range(CAPACITY):
        with Browser() as browser:  # a new participant: a browser keeps the visitor cookie
            browser.get(f"{swarm_stack.url}/", timeout=30)
    kept = list(Session.objects.active().filter(container__node=second))
    assert kept
    on_swarm.set_availability(2, "pause")
    try:
        pools.resize_pool(Pool.objects.get(), CAPACITY + 3)
        wait_until(lambda: ready_count() == 3, timeout=60, what="3 more ready containers")
        assert second not in nodes_of(Container.objects.ready())
        for session in kept:
            session.refresh_from_db()
            assert session.is_active
            assert requests.get(f"{swarm_stack.notebook_url}{session.container.base_path}", timeout=10).status_code == 200
    finally:
        on_swarm.set_availability(2, "active")


def use_every_notebook(stack):
    for _ in range(CAPACITY):
        with Browser() as browser:  # a new participant: a browser keeps the visitor cookie
            browser.get(f"{stack.url}/", timeout=30)
    return list(Session.objects.active().select_related("container"))


def test_a_restart_of_the_managers_engine_ends_no_session(swarm_stack, on_swarm):
    # Swarm refuses live-restore, so an engine's restart stops the notebooks
    # on its own machine: a manager that may be restarted holds none (README
    # "Scaling out"). The sessions on the workers must all outlive it.
    on_swarm.set_availability(1, "drain")
    try:
        start_full_pool(swarm_stack, on_swarm)
        held = use_every_notebook(swarm_stack)
        assert len(held) == CAPACITY and on_swarm.hostname(1) not in nodes_of(s.container for s in held)
        seconds = on_swarm.restart(1)
        restarted = time.monotonic()
        # Every node turns unknown until its agent reports again; the
        # heartbeat (every 0.5 s) lists them meanwhile. So does this listing.
        unknown_seen, seen_states = [], []

        def all_ready_again():
            try:
                states = on_swarm.node_states()
                if not seen_states or seen_states[-1][1] != states:
                    seen_states.append((round(time.monotonic() - restarted, 1), states, on_swarm.node_messages()))
                if "unknown" in states.values():
                    unknown_seen.append([info for info in get_backend().list_containers() if info.node_down or not info.is_running])
                return set(states.values()) == {"ready"}
            except (docker.errors.APIError, BackendError):  # the manager not serving its API yet
                return False

        wait_until(all_ready_again, timeout=60, what="every node ready after the manager's restart")
        print(f"\nmanager's dockerd restarted in {seconds:.1f}s; {len(unknown_seen)} listings saw unknown nodes; states: {seen_states}")
        assert unknown_seen and not any(unknown_seen)  # listed as running every time
        time.sleep(2)  # a few more heartbeats, with the nodes ready
        for session in held:
            session.refresh_from_db()
            assert session.is_active, f"{session.container.name} ended: {session.end_reason}"
            assert requests.get(f"{swarm_stack.notebook_url}{session.container.base_path}", timeout=10).status_code == 200
    finally:
        on_swarm.set_availability(1, "active")


def tar_of(folder):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def test_on_the_worker_nodes_materials_arrive_and_a_culled_participants_work_downloads_byte_identical(swarm_stack, on_swarm, tmp_path):
    # The manager drained: every notebook runs on a worker, whose engine the manager does not relay.
    on_swarm.set_availability(1, "drain")
    try:
        write_tree(tmp_path / "materials", {"intro.txt": b"day one\n"})
        PoolFactory(capacity=2, command=TINY_WORK_COMMAND, cull_timeout=5, materials_source=str(tmp_path / "materials"))
        swarm_stack.start(TMPNB_CULL_PERIOD=1)
        wait_until(lambda: Container.objects.ready().filter(materials_version=1).count() == 2, timeout=60, what="2 ready notebooks with the materials")
        workers = {on_swarm.hostname(2): 2, on_swarm.hostname(3): 3}
        ready = list(Container.objects.ready())
        assert nodes_of(ready) == set(workers)
        for container in ready:  # the tiny image has no working folder: the materials land in /
            assert on_swarm.container_of(workers[container.node], container.backend_id).exec_run(["cat", "/intro.txt"]).output == b"day one\n"

        browser = Browser()
        assert browser.get(f"{swarm_stack.url}/", timeout=30).status_code == 200
        container = Session.objects.active().get().container
        work = {"notes.txt": b"my results: 42\n", "data/random.bin": os.urandom(2 * 1024 * 1024)}
        write_tree(tmp_path / "work", work)
        assert on_swarm.container_of(workers[container.node], container.backend_id).put_archive("/work", tar_of(tmp_path / "work"))
        page = ended_page_with_work(browser, swarm_stack, container)  # idle 5 s, then culled
        assert Session.objects.get(container=container).end_reason == Session.EndReason.CULLED_IDLE
        _, saved = downloaded(browser, swarm_stack, page)
        assert saved == work
    finally:
        on_swarm.set_availability(1, "active")


def test_a_notebook_on_a_worker_node_writing_past_the_disk_limit_is_ended_disk_full(swarm_stack, on_swarm):
    # test_disk_limit's notebook, measured through the worker's own engine.
    on_swarm.set_availability(1, "drain")
    try:
        PoolFactory(capacity=1, command=TINY_WORK_COMMAND)
        swarm_stack.start(TMPNB_DISK_LIMIT="2m", TMPNB_DISK_PERIOD=1, TMPNB_SNAPSHOT_MAX_MB=1)
        wait_until(lambda: ready_count() == 1, timeout=60, what="a ready container")
        with Browser() as browser:
            assert browser.get(f"{swarm_stack.url}/", timeout=30).status_code == 200
        session = Session.objects.select_related("container").get()
        node = {on_swarm.hostname(2): 2, on_swarm.hostname(3): 3}[session.container.node]
        fill = "mkdir -p /work && dd if=/dev/zero of=/work/big.bin bs=1M count=3"
        assert on_swarm.container_of(node, session.container.backend_id).exec_run(["sh", "-c", fill]).exit_code == 0
        wait_until(lambda: Event.objects.filter(kind=Event.Kind.DISK, session=session).exists(), timeout=30, what="the end")
        session.refresh_from_db()
        assert session.end_reason == Session.EndReason.DISK_FULL
        assert Event.objects.get(kind=Event.Kind.DISK, session=session).details["used"] > 2 * 1024 * 1024
    finally:
        on_swarm.set_availability(1, "active")


def test_figure_copying_20_mb_out_of_a_notebook_on_a_worker_node_and_on_the_manager(on_swarm, tmp_path):
    # Three notebooks, which Swarm spreads over the nodes (after the tests
    # before, not always onto all three); the manager's and a worker's hold 20 MB.
    command = "sh -c 'mkdir -p /work && exec httpd -f -p 8888 -h /work'"
    started = [
        get_backend().start_container(
            ContainerSpec(name=f"tmpnb-test-figure-{n}", image=TINY_IMAGE, command=command, pool="figure", container_port=8888, host_ip="0.0.0.0")
        )
        for n in (1, 2, 3)
    ]
    try:
        service_on = {s.node: s.backend_id for s in started}
        worker = next(n for n in (3, 2) if on_swarm.hostname(n) in service_on)
        seconds = {}
        for node in (1, worker):
            service_id = service_on[on_swarm.hostname(node)]
            fill = "for i in $(seq 20); do head -c 1048576 /dev/urandom > /work/f$i; done"
            assert on_swarm.container_of(node, service_id).exec_run(["sh", "-c", fill]).exit_code == 0
            runs = []
            for run in range(3):
                began = time.monotonic()
                get_backend().copy_out(service_id, path="/work", destination=str(tmp_path / f"{node}-{run}"), timeout=60)
                runs.append(round(time.monotonic() - began, 3))
            assert sum(f.stat().st_size for f in (tmp_path / f"{node}-0" / "work").iterdir()) == 20 * 1024 * 1024
            seconds[node] = sorted(runs)
    finally:
        for service in started:
            get_backend().remove_container(service.backend_id)
    print(
        f"\ncopying a 20 MB folder out (3 runs, s): on the manager {seconds[1]}, on a worker node through its own engine (TLS over the lab's bridge) {seconds[worker]}"
    )


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium")
def test_on_the_worker_nodes_each_participant_has_an_origin_of_their_own(
    on_swarm,
    swarm_jupyter_image,
    stack_with_own_proxy,
    participant_folder,  # noqa: F811 (a fixture)
    admin_user,
    open_browser,  # noqa: F811
):
    # test_origins's attack, with every notebook on a worker node (the manager drained).
    on_swarm.set_availability(1, "drain")
    try:
        node_of = {on_swarm.hostname(n): n for n in (1, 2, 3)}

        def logs(container):
            return received_from(on_swarm.container_of(node_of[container.node], container.backend_id).logs().decode())

        stack, service, notebook, flags = origin_each(stack_with_own_proxy)
        attacker, victim = participants_cannot_reach_past_their_origins(
            stack, service, notebook, flags, participant_folder, admin_user, open_browser, logs=logs, start_env=swarm_environment(on_swarm)
        )
        for container in (attacker, victim):
            assert container.node in (on_swarm.hostname(2), on_swarm.hostname(3))
            assert container.target.startswith(f"http://{on_swarm.address(node_of[container.node])}:")
    finally:
        on_swarm.set_availability(1, "active")


def test_the_guard_is_on_every_node_and_a_node_without_it_gets_no_new_notebooks(on_swarm, settings, db):
    # The guard's own code (pool/netguard.py) runs each node's iptables through its engine.
    settings.TMPNB_SWARM_GUARD_IMAGE = TINY_IMAGE
    settings.DOCKER_TIMEOUT = 8  # how long a notebook no node may take waits for one
    metadata = on_swarm.stand_in(2, "169.254.169.254")
    backend, name = get_backend(), f"tmpnb-{settings.TMPNB_INSTALLATION}"
    spec = ContainerSpec(
        name="tmpnb-test-guarded", image=TINY_IMAGE, command="httpd -f -p 8888 -h /", pool="guard", container_port=8888, host_ip="0.0.0.0", network=name
    )
    started = []
    on_swarm.set_availability(1, "pause")
    on_swarm.set_availability(3, "pause")
    try:
        backend.ensure_network(name, pool="guard", bridge=netguard.bridge_name())
        started.append(backend.start_container(spec))  # the guard off: on node 2, the one node active
        notebook = on_swarm.container_of(2, started[0].backend_id)
        # busybox's nc: the tiny image's wget crashes.
        fetch = ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {metadata} 80"]
        # The stand-in answers an unguarded notebook (once its server and the new links are up).
        wait_until(lambda: notebook.exec_run(fetch).output.endswith(b"\r\n\r\nmetadata\n"), timeout=20, what="the stand-in answering the notebook")

        # Node 3's engine cannot be reached: its guard cannot be installed.
        # Node 2 asks a resolver of its own, which its rules let through on port 53.
        on_swarm.resolv_conf(2, "nameserver 10.254.53.53\n")
        settings.TMPNB_NETWORK_GUARD = True
        settings.TMPNB_SWARM_NODE_ENGINES = {**settings.TMPNB_SWARM_NODE_ENGINES, on_swarm.hostname(3): "unix:///nonexistent/docker.sock"}
        assert not network.guard_network()
        problems = dict(GuardCheck.objects.values_list("host", "problem"))
        assert problems[on_swarm.hostname(1)] == problems[on_swarm.hostname(2)] == ""
        assert "gets no new notebooks" in problems[on_swarm.hostname(3)]
        assert any(w.startswith(f"{on_swarm.hostname(3)}: notebook network not guarded") for w in network.guard_warnings())
        for node in (1, 2):
            assert f"tmpnb:{settings.TMPNB_INSTALLATION}" in on_swarm.in_node(node, "iptables", "-S")
        assert "-d 10.254.53.53/32 -p udp" in on_swarm.in_node(2, "iptables", "-S") and "10.254.53.53" not in on_swarm.in_node(1, "iptables", "-S")
        blocked = notebook.exec_run(fetch)
        assert blocked.exit_code != 0 and b"metadata" not in blocked.output
        # The proxy still reaches the notebook at its node's published port.
        assert requests.get(f"http://{started[0].host_ip}:{started[0].host_port}/", timeout=10).status_code in (200, 403, 404)

        # A hand takes node 2's guard away: the heartbeat's check puts it back.
        jump = next(line for line in on_swarm.in_node(2, "iptables", "-S", "DOCKER-USER").splitlines() if "tmpnb:" in line)
        on_swarm.in_node(2, "iptables", *jump.replace("-A", "-D", 1).replace('"', "").split())
        assert notebook.exec_run(fetch).output.endswith(b"\r\n\r\nmetadata\n")
        network.check_guard()
        assert Event.objects.filter(message__contains=f"network guard on {on_swarm.hostname(2)} was not in place").exists()
        assert notebook.exec_run(fetch).exit_code != 0

        # Only node 3 takes new notebooks now, and it is not guarded: none starts.
        on_swarm.set_availability(3, "active")
        on_swarm.set_availability(2, "pause")
        with pytest.raises(BackendError, match="no suitable node"):
            started.append(backend.start_container(replace(spec, name="tmpnb-test-unguarded")))
    finally:
        for container in started:
            backend.remove_container(container.backend_id)
        settings.TMPNB_SWARM_NODE_ENGINES = on_swarm.node_engines()
        on_swarm.resolv_conf(2)
        network.unguard_network()
        for node in (1, 2, 3):
            on_swarm.set_availability(node, "active")
        backend.remove_networks()
    for node in (1, 2, 3):
        assert "tmpnb:" not in on_swarm.in_node(node, "iptables", "-S")


def test_an_internal_network_on_a_worker_node_reaches_nothing_and_its_participant_is_served_through_the_proxy(on_swarm, settings, db, routes_cleaned):
    settings.TMPNB_SWARM_GUARD_IMAGE = TINY_IMAGE
    settings.TMPNB_NETWORK_GUARD = True
    # A site on the internet and node 2's resolver: stand-ins only node 2 reaches.
    site = on_swarm.stand_in(2, "198.51.100.80")
    resolver = on_swarm.stand_in(2, "192.0.2.53", resolver=True)
    on_swarm.resolv_conf(2, f"nameserver {resolver}\n")  # read as each container is made
    backend, name = get_backend(), f"tmpnb-{settings.TMPNB_INSTALLATION}"
    served = "mkdir -p /tmp/w/user/{0} && echo served > /tmp/w/user/{0}/index.html && exec httpd -f -p 8888 -h /tmp/w"
    routed = ContainerSpec(
        name="tmpnb-test-routed",
        image=TINY_IMAGE,
        command=f"sh -c '{served.format('routed')}'",
        pool="guard",
        container_port=8888,
        host_ip="0.0.0.0",
        network=name,
    )
    internal = replace(routed, name="tmpnb-test-internal", command=f"sh -c '{served.format('internal')}'", network=f"{name}-internal", internal=True)
    started = []
    on_swarm.set_availability(1, "pause")
    on_swarm.set_availability(3, "pause")
    try:
        assert network.guard_network()
        backend.ensure_network(routed.network, pool="guard", bridge=netguard.bridge_name())
        backend.ensure_network(internal.network, pool="guard", internal=True, bridge=netguard.bridge_name(internal=True))
        started += [backend.start_container(routed), backend.start_container(internal)]
        assert {container.node for container in started} == {on_swarm.hostname(2)}
        on_routed, on_internal = (on_swarm.container_of(2, container.backend_id) for container in started)
        fetch = ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {site} 80"]
        look_up = ["nslookup", "routed.example.test"]

        # Under the guard a notebook on the routed network reaches the site,
        # and Docker's DNS resolves an outside name through the resolver.
        wait_until(lambda: on_routed.exec_run(fetch).output.endswith(b"\r\n\r\nmetadata\n"), timeout=20, what="the site answering the routed notebook")
        assert resolver.encode() in on_routed.exec_run(look_up).output
        assert "routed.example.test" in on_swarm.queries(resolver)

        # On the internal network nothing answers: the site, the resolver
        # asked directly, nor the resolver Docker's DNS forwards to, which
        # does so from the notebook's own namespace and is rejected there.
        # Names of the network itself still resolve (Docker answers them).
        assert on_internal.exec_run(fetch).exit_code != 0
        asked = on_internal.exec_run(["nslookup", "internal.example.test"])
        assert asked.exit_code != 0 and resolver.encode() not in asked.output, asked.output
        assert on_internal.exec_run(["nslookup", "direct.example.test", resolver]).exit_code != 0
        assert set(on_swarm.queries(resolver)) == {"routed.example.test"}
        # Nor the routed notebook at its node's published port (the host answers that).
        own_page = ["sh", "-c", f"printf 'GET /user/routed/ HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {started[0].host_ip} {started[0].host_port}"]
        assert requests.get(f"http://{started[0].host_ip}:{started[0].host_port}/user/routed/", timeout=10).text == "served\n"
        assert b"served" not in on_internal.exec_run(own_page).output

        # The proxy reaches the internal notebook at its node's published port.
        settings.CONFIGPROXY_ENDPOINT, settings.CONFIGPROXY_AUTH_TOKEN = routes_cleaned.api_url, routes_cleaned.token
        get_proxy().add_route(origins.route_path("internal"), f"http://{started[1].host_ip}:{started[1].host_port}")
        page = requests.get(f"{routes_cleaned.notebook_url}/user/internal/", timeout=10)
        assert page.status_code == 200 and page.text == "served\n"
    finally:
        for container in started:
            backend.remove_container(container.backend_id)
        on_swarm.resolv_conf(2)
        network.unguard_network()
        for node in (1, 3):
            on_swarm.set_availability(node, "active")
        backend.remove_networks()
    for node in (1, 2, 3):
        assert "tmpnb:" not in on_swarm.in_node(node, "iptables", "-S")


def test_a_stopped_node_ends_its_sessions_as_lost_and_the_others_keep_theirs(swarm_stack, on_swarm):
    start_full_pool(swarm_stack, on_swarm)
    second = on_swarm.hostname(2)
    held = use_every_notebook(swarm_stack)
    lost = [s for s in held if s.container.node == second]
    assert lost
    stopped = time.monotonic()
    on_swarm.stop(2)
    try:
        wait_until(lambda: not Session.objects.active().filter(container__node=second).exists(), timeout=60, what="the stopped node's sessions ended")
        print(f"\nnode 2's dockerd stopped: its {len(lost)} sessions ended in {time.monotonic() - stopped:.1f}s (the stop itself included)")
        for session in held:
            session.refresh_from_db()
        assert {s.end_reason for s in lost} == {Session.EndReason.NODE_LOST}
        assert all(s.is_active for s in held if s not in lost)
    finally:
        on_swarm.start(2)
        on_swarm.wait_until_ready(timeout=60)


def test_a_lost_node_ends_its_sessions_and_the_pool_refills_on_the_others(swarm_stack, on_swarm):
    start_full_pool(swarm_stack, on_swarm)
    third = on_swarm.hostname(3)
    for _ in range(CAPACITY):  # every notebook in use: those on the third node too
        with Browser() as browser:
            browser.get(f"{swarm_stack.url}/", timeout=30)
    lost = list(Session.objects.active().filter(container__node=third))
    assert lost
    # A copy under way from the node as it is lost: 50 MB, more than the
    # sockets between hold, read one chunk before the cut and the rest after.
    copied = lost[0].container
    big = "mkdir /big && head -c 52428800 /dev/urandom > /big/file"
    assert on_swarm.container_of(3, copied.backend_id).exec_run(["sh", "-c", big]).exit_code == 0
    copy = get_backend().archive_out(copied.backend_id, "/big", timeout=COPY_TIMEOUT)
    next(copy)
    cut = time.monotonic()
    on_swarm.cut(3)
    with pytest.raises(BackendError, match=f"on node {third}: .*not done in time"):
        for _ in copy:
            pass
    print(f"\na copy from node 3 as it was cut failed after {time.monotonic() - cut:.1f}s (its timeout {COPY_TIMEOUT}s)")

    def refilled():
        live = Container.objects.live().exclude(node=third)
        return live.filter(state__in=[Container.State.READY, Container.State.ASSIGNED]).count() == CAPACITY

    wait_until(refilled, timeout=60, what="the pool full again on the other two nodes")
    failover = time.monotonic() - cut
    print(f"\nfailover: node 3 cut, its {len(lost)} sessions ended and the pool full again in {failover:.1f}s")
    for session in lost:
        session.refresh_from_db()
        assert session.end_reason == Session.EndReason.NODE_LOST
    assert not Container.objects.live().filter(node=third).exists()
    assert Session.objects.filter(end_reason=Session.EndReason.NODE_LOST).count() == len(lost)
