"""The Docker Swarm backend: each notebook is a service of one task, placed by
Swarm on one of its nodes.

It talks to a manager (``DOCKER_HOST``) through the shared Docker client of
``pool.backends.client`` and answers in the shapes of ``pool.backends.base``. The proxy
reaches a notebook at its node's address and a host port Swarm picks: the
routing mesh is not used (it needs IPVS, and a fixed port would allow one
notebook per node). Swarm never restarts or moves a notebook: its state is
gone with its task, so the pool replaces it, as on one host.

Files (saved work, materials, static files) are copied by the engine of the
node a notebook runs on, reached as TMPNB_SWARM_NODE_ENGINES says, with the
single-host backend's own calls: the manager does not relay another node's
engine. README "Scaling out" compares this with the other ways considered.
"""

import contextlib
import logging
import shlex
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
from django.conf import settings
from docker.errors import APIError, NotFound
from docker.utils import parse_bytes

from pool.backends import docker as one_engine  # its calls on files, made on a node's engine
from pool.backends.base import ContainerInfo, ContainerSpec, NotebookUser, StartedContainer
from pool.backends.client import (
    LABEL_POOL,
    DockerError,
    client,
    docker_errors,
    docker_work,
    engine_client,
    image_exists,  # noqa: F401 (the manager's images: see start_container)
    image_labels,  # noqa: F401 (the manager's images)
    installation_filter,
    labels_for,
)

log = logging.getLogger(__name__)

copy_out_of_image = one_engine.copy_out_of_image  # out of the manager's images

# Task states after which the task will never run (Swarm's task lifecycle).
_ENDED = {"complete", "shutdown", "failed", "rejected", "orphaned", "remove"}
# A node frees a network once its tasks' containers are gone: a removed task
# stops within its stop grace (10 s by default).
NETWORK_FREED_TRIES = 75  # 0.2 s apart


class SwarmError(DockerError):
    """Swarm refused a request, or a notebook's task did not come up."""


def _task_template(spec: ContainerSpec) -> dict[str, Any]:
    if spec.host_network:
        raise SwarmError("the host network is not available on the swarm backend")
    container: dict[str, Any] = {
        # Args, not Command: Command would replace the image's entrypoint (tini).
        "Image": spec.image,
        "Args": shlex.split(spec.command),
        "Labels": labels_for(spec.pool, container_name=spec.name),
        "Env": [f"{key}={value}" for key, value in spec.environment.items()],
        "CapabilityDrop": ["ALL"],
        "Hosts": [f"{address} {name}" for name, address in spec.extra_hosts.items()],
        "Mounts": [_mount(volume) for volume in spec.volumes],
    }
    if spec.user:
        container["User"] = spec.user
    limits: dict[str, float] = {"Pids": spec.pids_limit}
    if spec.mem_limit:
        limits["MemoryBytes"] = parse_bytes(spec.mem_limit)
    if spec.cpu_quota:
        # A quota per 100 ms period, as Swarm counts CPUs in billionths.
        limits["NanoCPUs"] = spec.cpu_quota * 10_000
    template: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": {"Limits": limits},
        "RestartPolicy": {"Condition": "none"},
    }
    if spec.network:
        template["Networks"] = [{"Target": spec.network}]
    if settings.TMPNB_NETWORK_GUARD:
        # A node whose guard is not in place gets no new notebook (see mark_guarded).
        template["Placement"] = {"Constraints": [f"node.labels.{_guard_label()}==true"]}
    return template


def _mount(volume: str) -> dict[str, Any]:
    source, target, mode = volume.split(":")
    return {"Type": "bind", "Source": source, "Target": target, "ReadOnly": mode == "ro"}


def start_container(spec: ContainerSpec) -> StartedContainer:
    """Create a service of one task with a host-mode port, wait until the task
    runs, and return its node's address and the port Swarm published."""
    endpoint = {"Ports": [{"Protocol": "tcp", "TargetPort": spec.container_port, "PublishMode": "host"}]}
    try:
        with docker_errors(f"starting {spec.name}", error_class=SwarmError):
            with docker_work():
                # The daemon does not ask a registry for the image (API >= 1.30); the
                # nodes must hold it already (DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1).
                service = client().api.create_service(
                    _task_template(spec),
                    name=spec.name,
                    labels=labels_for(spec.pool, container_name=spec.name),
                    mode={"Replicated": {"Replicas": 1}},
                    endpoint_spec=endpoint,
                )
            task = _wait_until_running(service["ID"], spec.name)
            node = client().api.inspect_node(task["NodeID"])
            port = task["Status"]["PortStatus"]["Ports"][0]["PublishedPort"]
    except (SwarmError, KeyError, IndexError) as error:
        with contextlib.suppress(SwarmError):  # the reconciler removes what stays
            remove_container(spec.name)
        if isinstance(error, SwarmError):
            raise
        raise SwarmError(f"starting {spec.name}: {error}") from None
    return StartedContainer(backend_id=service["ID"], host_ip=_node_address(node), host_port=port, node=node["Description"]["Hostname"])


def _wait_until_running(service_id: str, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + settings.DOCKER_TIMEOUT
    delay = 0.05
    last = "no task yet"
    while time.monotonic() < deadline:
        tasks: list[dict[str, Any]] = client().api.tasks(filters={"service": service_id})
        for task in tasks:
            status = task["Status"]
            if status["State"] == "running" and status.get("PortStatus", {}).get("Ports"):
                return task
            last = f"task {status['State']}: {status.get('Err') or status.get('Message')}"
            if status["State"] in _ENDED:
                raise SwarmError(f"{name}: {last}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    # Swarm's reason says why (a task pending "no suitable node", for one).
    raise SwarmError(f"{name}: no task running within {settings.DOCKER_TIMEOUT}s ({last})")


def _node_address(node: dict[str, Any]) -> str:
    # A manager may report 0.0.0.0 as its address; its advertised address is right.
    address: str = node["Status"].get("Addr", "")
    if address in ("", "0.0.0.0") and node.get("ManagerStatus"):
        address = node["ManagerStatus"]["Addr"].rsplit(":", 1)[0]
    return address


def remove_container(backend_id: str) -> None:
    """Remove the service (its task goes with it); already gone is done."""
    with docker_errors(f"removing service {backend_id[:12]}", error_class=SwarmError), docker_work():
        try:
            client().api.remove_service(backend_id)
        except NotFound:
            pass


def list_containers() -> list[ContainerInfo]:
    """One entry per service of this installation, from three list calls
    (services, their tasks, nodes). A notebook whose node is lost (see
    ``node_lost``) counts as lost with it."""
    with docker_errors("listing services", error_class=SwarmError):
        services = client().api.services(filters=installation_filter())
        tasks = client().api.tasks(filters={"service": [s["ID"] for s in services]}) if services else []
        nodes = {node["ID"]: node for node in client().api.nodes()}
    newest: dict[str, dict[str, Any]] = {}
    for task in sorted(tasks, key=lambda t: t["Version"]["Index"]):
        newest[task["ServiceID"]] = task
    now = datetime.now(UTC)
    lost = {node_id for node_id, node in nodes.items() if node_lost(node, now=now)}
    return [_info(service, newest.get(service["ID"]), nodes, lost) for service in services]


def node_lost(node: dict[str, Any], *, now: datetime) -> bool:
    """Whether a node is gone with its notebooks: Swarm says it is ``down``, or
    it has not been ``ready`` for TMPNB_NODE_GRACE seconds.

    A leadership change or a restart of the manager marks every node
    ``unknown`` until its agent reports again, within seconds (``disconnected``
    is an agent looking for a manager): their notebooks run on meanwhile. The
    grace is counted from the node's ``UpdatedAt``, which Swarm stamps when it
    changes the node's state, so a restarted manager starts every clock afresh
    and time our own processes spent stopped never counts."""
    state = node["Status"]["State"]
    if state in ("ready", "down"):
        return state == "down"
    not_ready_since = datetime.fromisoformat(node["UpdatedAt"])
    return now - not_ready_since > timedelta(seconds=settings.TMPNB_NODE_GRACE)


def _info(service: dict[str, Any], task: dict[str, Any] | None, nodes: dict[str, dict[str, Any]], lost: set[str]) -> ContainerInfo:
    labels = service["Spec"].get("Labels", {})
    name, pool = service["Spec"]["Name"], labels.get(LABEL_POOL, "")
    if task is None:
        return ContainerInfo(backend_id=service["ID"], name=name, pool=pool, status="no task")
    node_id = task.get("NodeID", "")
    node = nodes.get(node_id)
    # A node removed from the Swarm is lost too; a task not placed yet has none.
    node_down = bool(node_id) and (node is None or node_id in lost)
    status = "node down" if node_down else task["Status"]["State"]
    hostname = node["Description"]["Hostname"] if node else ""
    return ContainerInfo(backend_id=service["ID"], name=name, pool=pool, status=status, node=hostname, node_down=node_down)


def ensure_network(name: str, *, pool: str, internal: bool = False, bridge: str = "") -> None:
    """A Swarm-scoped bridge network: on each node a local bridge named
    ``bridge`` (so the network guard matches it as on one machine), from a
    config-only network made on every node's engine. Host-mode published
    ports work on it as on the default bridge. An ``internal`` one is such a
    bridge too: the network guard on each node cuts it off from everything
    (pool/netguard.py), so there is none without the guard."""
    if internal and not settings.TMPNB_NETWORK_GUARD:
        raise SwarmError("an internal network on the swarm backend needs the network guard (TMPNB_NETWORK_GUARD)")
    local = f"{name}-node"
    for hostname in settings.TMPNB_SWARM_NODE_ENGINES:
        with _naming(hostname):
            options = {"com.docker.network.bridge.name": bridge} if bridge else {}
            _ensure_network_on(_node_engine(hostname), {"Name": local, "ConfigOnly": True, "Options": options, "Labels": labels_for(pool)})
    # No labels: Docker refuses any setting of its own on a network made from a configuration.
    _ensure_network_on(client(), {"Name": name, "Driver": "bridge", "Scope": "swarm", "ConfigFrom": {"Network": local}})


def _ensure_network_on(engine: docker.DockerClient, body: dict[str, Any]) -> None:
    # docker-py's create_network knows neither ConfigOnly nor ConfigFrom: the
    # request is sent with its own (untyped) helpers, as create_network sends it.
    api: Any = engine.api
    with docker_errors(f"creating network {body['Name']}", error_class=SwarmError), docker_work():
        # The name filter matches parts of names too.
        if any(network["Name"] == body["Name"] for network in api.networks(names=[body["Name"]])):
            return
        try:
            api._result(api._post_json(api._url("/networks/create"), data=body), True)
        except APIError as error:
            if error.status_code != 409:  # another worker made it meanwhile
                raise


def remove_networks() -> None:
    """The installation's networks: the Swarm's, then each node's configuration
    (which a node frees a moment after the Swarm's network is gone)."""
    with docker_errors("removing networks", error_class=SwarmError), docker_work():
        # The Swarm's networks are known by their (labelled) configuration.
        ours = {network["Name"] for network in client().api.networks(filters=installation_filter()) if network.get("ConfigOnly")}
        for network in client().api.networks():
            if network.get("Scope") == "swarm" and (network.get("ConfigFrom") or {}).get("Network") in ours:
                with contextlib.suppress(NotFound):
                    client().api.remove_network(network["Id"])
    for hostname in settings.TMPNB_SWARM_NODE_ENGINES:
        engine = _node_engine(hostname)
        with _naming(hostname), docker_errors("removing networks", error_class=SwarmError), docker_work():
            for network in engine.api.networks(filters=installation_filter()):
                if network.get("ConfigOnly"):
                    _remove_when_free(engine, network["Id"])


def _remove_when_free(engine: docker.DockerClient, network_id: str) -> None:
    for _ in range(NETWORK_FREED_TRIES - 1):
        try:
            engine.api.remove_network(network_id)
            return
        except NotFound:
            return
        except APIError:
            time.sleep(0.2)
    engine.api.remove_network(network_id)


def _guard_label() -> str:
    return f"tmpnb.guarded.{settings.TMPNB_INSTALLATION}"


def mark_guarded(hostname: str, guarded: bool) -> None:
    """Label node ``hostname`` as guarded or not: notebooks are placed only on
    guarded nodes while TMPNB_NETWORK_GUARD is on."""
    with docker_errors(f"labelling node {hostname}", error_class=SwarmError), docker_work():
        node = client().api.inspect_node(hostname)
        spec = node["Spec"]
        labels = spec.setdefault("Labels", {})
        if (labels.get(_guard_label()) == "true") == guarded:
            return
        if guarded:
            labels[_guard_label()] = "true"
        else:
            labels.pop(_guard_label(), None)
        client().api.update_node(node["ID"], node["Version"]["Index"], spec)


def run_on_node(hostname: str, command: Sequence[str], stdin: str | None, *, timeout: float) -> tuple[int, str, str]:
    """Run ``command`` as root on the machine of node ``hostname`` itself, and
    return its exit status, output and errors: from a short-lived container
    of TMPNB_SWARM_GUARD_IMAGE on the node's engine, in the node's network, running the node's own programs (chroot into its root folder).
    ``stdin`` goes in through the environment: attaching is not needed."""
    script = 'printf %s "$TMPNB_STDIN" | exec chroot /host "$@"'
    engine = _node_engine(hostname)
    with _naming(hostname), docker_errors(f"running {command[0]} on node {hostname}", error_class=SwarmError), docker_work():
        container = engine.containers.create(
            settings.TMPNB_SWARM_GUARD_IMAGE,
            list(command),
            entrypoint=["sh", "-c", script, "sh"],
            environment={"TMPNB_STDIN": stdin or ""},
            user="0",
            # What iptables needs; --privileged would ask for every capability, which a host may not grant.
            cap_add=["NET_ADMIN", "NET_RAW"],
            network_mode="host",
            volumes={"/": {"bind": "/host", "mode": "rw"}},
            labels=labels_for("guard"),
        )
        try:
            container.start()
            status: int = container.wait(timeout=timeout)["StatusCode"]
            return (
                status,
                container.logs(stdout=True, stderr=False).decode(errors="replace"),
                container.logs(stdout=False, stderr=True).decode(errors="replace"),
            )
        finally:
            with contextlib.suppress(NotFound):
                container.remove(force=True)


def disk_usage() -> dict[str, int]:
    """What the notebooks on every node have written, asked of each node's
    engine at once as on one machine (the manager does not relay them). A
    node that does not answer is left out, its notebooks unmeasured until it
    does; SwarmError when none answers."""
    engines = settings.TMPNB_SWARM_NODE_ENGINES

    def measure(hostname: str) -> dict[str, int] | SwarmError:
        try:
            with _naming(hostname):
                engine = _node_engine(hostname)
                return one_engine.disk_usage_on(lambda: engine)
        except SwarmError as error:
            return error

    with ThreadPoolExecutor(max(len(engines), 1)) as threads:
        answers = dict(zip(engines, threads.map(measure, engines), strict=True))
    usage: dict[str, int] = {}
    for hostname, answer in answers.items():
        if isinstance(answer, SwarmError):
            log.warning("disk of node %s not measured: %s", hostname, answer)
        else:
            usage |= answer
    if answers and all(isinstance(answer, SwarmError) for answer in answers.values()):
        raise SwarmError(f"measuring the notebooks' disk: no node answered ({next(iter(answers.values()))})")
    return usage


def _on_node(service_id: str) -> tuple[str, one_engine.Engine, str]:
    """The node that runs (or ran) the service's task, its engine from
    TMPNB_SWARM_NODE_ENGINES, and the id of the task's container there: the
    manager does not relay another node's engine, and the files are copied
    as on one machine, by that engine (never by asking the notebook)."""
    doing = f"finding the container of {service_id[:12]}"
    with docker_errors(doing, error_class=SwarmError):
        tasks: list[dict[str, Any]] = client().api.tasks(filters={"service": service_id})
        placed = [t for t in tasks if t["Status"].get("ContainerStatus", {}).get("ContainerID")]
        if not placed:
            raise SwarmError(f"{doing}: its task has no container")
        task = max(placed, key=lambda t: t["Version"]["Index"])
        hostname: str = client().api.inspect_node(task["NodeID"])["Description"]["Hostname"]
    with _naming(hostname):
        engine = _node_engine(hostname)
    return hostname, lambda: engine, task["Status"]["ContainerStatus"]["ContainerID"]


def _node_engine(hostname: str) -> docker.DockerClient:
    url = settings.TMPNB_SWARM_NODE_ENGINES.get(hostname)
    if url is None:
        raise SwarmError(f"no engine is known for node {hostname} (TMPNB_SWARM_NODE_ENGINES)")
    return engine_client(url)


@contextlib.contextmanager
def _naming(hostname: str) -> Iterator[None]:
    """An engine's error names its node (a node lost mid-copy, for one)."""
    try:
        yield
    except SwarmError:
        raise
    except DockerError as error:
        raise SwarmError(f"on node {hostname}: {error}", unreachable=error.unreachable) from None


def copy_out(backend_id: str, *, path: str, destination: str, timeout: float | None = None) -> None:
    hostname, engine, container_id = _on_node(backend_id)
    with _naming(hostname):
        one_engine.copy_out_on(engine, container_id, path=path, destination=destination, timeout=timeout)


def archive_out(backend_id: str, path: str, *, timeout: float) -> Generator[bytes, None, None]:
    # A generator as docker.archive_out is: nothing is asked before the first
    # read, and finding the node counts in ``timeout``.
    deadline = time.monotonic() + timeout
    hostname, engine, container_id = _on_node(backend_id)
    with _naming(hostname):
        yield from one_engine.archive_out_on(engine, container_id, path, timeout=max(deadline - time.monotonic(), 0.0))


def copy_in(backend_id: str, *, tar_path: str, destination: str) -> None:
    hostname, engine, container_id = _on_node(backend_id)
    with _naming(hostname):
        one_engine.copy_in_on(engine, container_id, tar_path=tar_path, destination=destination)


def path_exists(backend_id: str, path: str) -> bool:
    hostname, engine, container_id = _on_node(backend_id)
    with _naming(hostname):
        return one_engine.path_exists_on(engine, container_id, path)


def notebook_user(backend_id: str) -> NotebookUser:
    hostname, engine, container_id = _on_node(backend_id)
    with _naming(hostname):
        return one_engine.notebook_user_on(engine, container_id)
