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
import shlex
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from docker.errors import NotFound
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

copy_out_of_image = one_engine.copy_out_of_image  # out of the manager's images

# Task states after which the task will never run (Swarm's task lifecycle).
_ENDED = {"complete", "shutdown", "failed", "rejected", "orphaned", "remove"}


class SwarmError(DockerError):
    """Swarm refused a request, or a notebook's task did not come up."""


def _task_template(spec: ContainerSpec) -> dict[str, Any]:
    if spec.host_network or spec.internal:
        raise SwarmError("the host network and internal networks are not available on the swarm backend")
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
    raise SwarmError("networks of the service's own are not available on the swarm backend")


def remove_networks() -> None:
    pass  # it makes none


def disk_usage() -> dict[str, int]:
    # The tasks run on other machines, whose engines the manager does not relay.
    return {}


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
        url = settings.TMPNB_SWARM_NODE_ENGINES.get(hostname)
        if url is None:
            raise SwarmError(f"{doing}: no engine is known for its node {hostname} (TMPNB_SWARM_NODE_ENGINES)")
        engine = engine_client(url)
    return hostname, lambda: engine, task["Status"]["ContainerStatus"]["ContainerID"]


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
