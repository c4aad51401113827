"""Starting a container and waiting until its notebook server answers."""

import logging
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import requests
from django.conf import settings

from pool import netguard
from pool.backends import get_backend
from pool.backends.base import BackendError, ContainerSpec
from pool.command import render_command
from pool.materials_files import MaterialsError
from pool.models import Container, Event
from pool.options import parse_extra_hosts, parse_host_directories
from pool.services import lab_static, notebook_api
from pool.services.assignment import serve_queue
from pool.services.broadcasts import catch_up, put_broadcasts_in
from pool.services.ending import remove_quietly
from pool.services.events import record_event
from pool.services.leases import renewing_while
from pool.services.materials import put_materials_in
from pool.services.pools import record_spawn_failure, record_spawn_success
from pool.services.routes import route_container
from proxyapi import ProxyError

log = logging.getLogger(__name__)

T = TypeVar("T")


# Seconds a spawn may go without renewing its lease before the reconciler
# takes its worker for dead (killed mid-spawn) and cleans up after it.
SPAWN_LEASE = timedelta(seconds=10)


class SpawnTimeout(Exception):
    pass


def _free_host_port(ip: str) -> int:
    # On the host's network each server binds a port of its own; the kernel
    # picks a free one. Another process could take it before the server
    # binds: the spawn then fails and the pool spawns again.
    with socket.socket() as probe:
        probe.bind((ip, 0))
        return probe.getsockname()[1]


def container_spec(container: Container) -> ContainerSpec:
    pool = container.pool
    network = pool.docker_network
    # Routed to its address on a Docker network, a container publishes no
    # port; without a network of the pool's own it joins the installation's.
    publish = settings.TMPNB_ROUTE_TO == "published"
    # On a guarded Swarm a notebook joins it too (its port published as well):
    # the guard matches its bridge on each node (README "Scaling out").
    guarded_swarm = settings.TMPNB_BACKEND == "swarm" and settings.TMPNB_NETWORK_GUARD
    if pool.internal_network:
        network = f"tmpnb-{settings.TMPNB_INSTALLATION}-internal"
        get_backend().ensure_network(network, pool=pool.name, internal=True, bridge=netguard.bridge_name(internal=True))
    elif (not publish or guarded_swarm) and not network and not pool.host_network:
        network = f"tmpnb-{settings.TMPNB_INSTALLATION}"
        get_backend().ensure_network(network, pool=pool.name, bridge=netguard.bridge_name())
    if pool.host_network:
        host_port = _free_host_port(pool.container_ip)
        port, ip = host_port, pool.container_ip
    else:
        port, ip, host_port = pool.container_port, "0.0.0.0", None
    command = render_command(pool.command, base_path=container.base_path, port=port, ip=ip, token=container.token, live_help=pool.live_help)
    return ContainerSpec(
        name=container.name,
        image=pool.image,
        command=command,
        pool=pool.name,
        container_port=pool.container_port,
        host_ip=pool.container_ip,
        mem_limit=pool.mem_limit,
        cpu_shares=pool.cpu_shares,
        cpu_quota=pool.cpu_quota,
        user=pool.container_user,
        host_network=pool.host_network,
        host_port=host_port,
        network=network,
        internal=pool.internal_network,
        publish=publish,
        volumes=parse_host_directories(pool.host_directories, settings.TMPNB_PROTECTED_PATHS),
        extra_hosts=parse_extra_hosts(pool.extra_hosts),
        pids_limit=settings.TMPNB_PIDS_LIMIT,
    )


def spawn_container(container_id: int) -> Container:
    """Start the container of a spawning row, copy the pool's materials (and broadcasts) in,
    wait until its server answers under its base path, route it, and mark it ready."""
    container = Container.objects.select_related("pool").get(pk=container_id)
    # Of two workers handed the same row (a task delivered twice), only one
    # starts it. The other would fail on the container name, and its clean-up
    # would remove the first one's container.
    if not container.claim_spawn(SPAWN_LEASE):
        return container
    try:
        started = _keeping_the_lease(container, lambda: get_backend().start_container(container_spec(container)))
        container.mark_started(started)
        if container.pool.materials_version:
            # Before it answers, so nobody lands before the files; while the server boots.
            container.materials_version = _keeping_the_lease(container, lambda: put_materials_in(container))
            container.save(update_fields=["materials_version"])
        put_broadcasts_in(container, running=lambda call: _keeping_the_lease(container, call))
        wait_until_answering(container, timeout=settings.TMPNB_SPAWN_TIMEOUT)
        # Before its route exists, as the page it serves asks for them.
        _keeping_the_lease(container, lambda: lab_static.copy_once(container.pool))
        if settings.TMPNB_STATIC_FILES:
            # Before its route exists: from a server no participant has reached.
            extract_static_files(container)
        route_container(container)
    except Exception as error:
        # Whatever went wrong, the spawn ends failed, counted towards the
        # pool's backoff and pause, and shown: an error nobody foresaw (a bug,
        # docker-py refusing a command it cannot split) would otherwise leave
        # the row "starting" until the reconciler gives up on it, with no reason.
        if isinstance(error, (BackendError, ProxyError, SpawnTimeout, WaitingKernelFailed, MaterialsError)):
            reason = str(error)
        else:
            log.exception("spawning %s: unexpected error", container.name)  # the traceback, for the operator
            reason = f"{type(error).__name__}: {error}"
        _spawn_failed(container, reason)
        return container
    record_spawn_success(container.pool_id)
    # Only a row still spawning becomes ready. One drained meanwhile may have
    # been removed before its container existed: remove what we started.
    if not container.move_to(Container.State.READY):
        remove_quietly(container)
        return container
    assert container.ready_at is not None  # move_to stamped it
    seconds = round((container.ready_at - container.created_at).total_seconds(), 3)
    record_event(Event.Kind.SPAWN, f"{container.name} ready in {seconds} s", container=container, seconds=seconds)
    catch_up(container)  # what was broadcast while it started: the hand-out counted ready notebooks only
    serve_queue(container.pool_id)  # the visitor waiting longest gets it now
    return container


def _spawn_failed(container: Container, reason: str) -> None:
    remove_quietly(container)
    if not container.mark_failed(reason):
        # Drained or killed while it started: a cancellation, which never
        # counts towards the pool's backoff or pause.
        log.info("spawning %s cancelled: %s", container.name, reason)
        return
    log.warning("spawning %s failed: %s", container.name, reason)
    record_spawn_failure(container.pool_id, reason)
    record_event(Event.Kind.FAILURE, f"spawning {container.name} failed: {reason}", container=container, stage="spawn")


def _keeping_the_lease(container: Container, call: Callable[[], T]) -> T:
    """Run ``call`` (create and start, which can wait for a Docker slot and
    then take DOCKER_TIMEOUT per request) in a thread of its own while this
    one renews the spawn's lease, so the reconciler never takes a live spawn
    for dead. Only this thread touches the database. A lease that cannot be
    renewed (the row was drained) is noticed once the call is done."""
    return renewing_while(call, renew=lambda: container.renew_lease(SPAWN_LEASE), every=SPAWN_LEASE.total_seconds() / 3, name="spawn")


def wait_until_answering(container: Container, *, timeout: float) -> None:
    """Poll the page a visitor lands on (the pool's redirect_uri under the base
    path, with the token) until it answers 200, renewing the spawn's lease as
    it waits; then warm what the page asks for first, and wait for the
    kernel that the image starts in advance, if it does.

    So the server renders its first page (templates, the hashes of its static
    files' URLs) and its first kernel imports Python while the pool fills,
    not while a burst of visitors waits on it (docs/performance.md, issues 11 and 32)."""
    deadline = time.monotonic() + timeout
    landing = f"{container.target}{container.url_for(container.pool.redirect_uri)}"
    _poll(container, deadline, lambda: _landing_answer(landing), doing=f"answer 200 on {landing}")
    _warm_kernel_specs(container)
    _poll(container, deadline, lambda: _waiting_kernel_answer(container), doing="have its waiting kernel ready")


def _poll(container: Container, deadline: float, answer: Callable[[], str | None], *, doing: str) -> None:
    """Call ``answer`` until it says None (done), renewing the spawn's lease;
    SpawnTimeout past ``deadline``, with the last answer it gave."""
    renew_at = time.monotonic()  # at once: a spawn drained while it started stops here
    delay = 0.05
    while True:
        if time.monotonic() > renew_at:
            if not container.renew_lease(SPAWN_LEASE):
                raise SpawnTimeout(f"{container.name} was drained, killed or given up while starting")
            renew_at = time.monotonic() + SPAWN_LEASE.total_seconds() / 3
        last = answer()
        if last is None:
            return
        if time.monotonic() > deadline:
            raise SpawnTimeout(f"{container.name} did not {doing} within the spawn timeout ({last})")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _landing_answer(url: str) -> str | None:
    try:
        status = _container_get(url, timeout=2).status_code
    except requests.RequestException as error:
        return type(error).__name__
    return None if status == 200 else f"HTTP {status}"


class WaitingKernelFailed(Exception):
    pass


def _waiting_kernel_answer(container: Container) -> str | None:
    # deploy/images/tmpnb_waiting_kernel.py. A server without it answers
    # something else there (404, a page): it has no kernel to wait for.
    try:
        response = _container_get(f"{notebook_api.server_url(container)}tmpnb/waiting-kernel", headers=_token_header(container), timeout=2)
    except requests.RequestException as error:
        return type(error).__name__
    try:
        state = response.json() if response.status_code == 200 else None
    except ValueError:
        state = None
    if not isinstance(state, dict) or "ready" not in state:
        return None
    if state.get("error"):
        raise WaitingKernelFailed(f"{container.name}'s waiting kernel did not start: {state['error']}")
    return None if state["ready"] else "its kernel is starting"


def _token_header(container: Container) -> dict[str, str]:
    return {"Authorization": f"token {container.token}"} if container.token else {}


def _container_get(url: str, **kwargs: Any) -> requests.Response:
    # Without the environment's settings: a container's address is this
    # machine's or a Docker network's own, which a machine-wide HTTP_PROXY
    # must not send to a forward proxy (and reading them cost 0.4 ms of CPU
    # a request, about ten requests a spawn).
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, **kwargs)


def _warm_kernel_specs(container: Container) -> None:
    # A Jupyter page's first call to its server lists the kernel specs: about
    # 80 ms the first time on an idle server, 3 ms after. Other servers answer
    # 404 here, which costs nothing.
    try:
        _container_get(f"{notebook_api.server_url(container)}api/kernelspecs", headers=_token_header(container), timeout=2)
    except requests.RequestException:
        pass


def static_files_root() -> Path:
    return Path(settings.VAR_DIR) / "static_files"


def extract_static_files(container: Container) -> None:
    """tmpnb's static_files: copy that folder out of the first container that
    answers, once, before anyone can reach it, to be served at /static/ on
    the notebooks' origins (never the admin's)."""
    root = static_files_root()
    if root.exists():
        return
    folder = cast(str, settings.TMPNB_STATIC_FILES)  # called only when it is set
    with tempfile.TemporaryDirectory(dir=settings.VAR_DIR) as scratch:
        try:
            get_backend().copy_out(container.backend_id, path=folder, destination=scratch)
        except BackendError as error:
            log.warning("static files not extracted: %s", error)
            return
        extracted = Path(scratch) / Path(folder.rstrip("/")).name
        try:
            extracted.rename(root)  # atomic: a concurrent spawn's copy loses quietly
        except OSError:
            shutil.rmtree(extracted, ignore_errors=True)
