"""The one module that talks to Docker.

It turns the SDK's objects into tmpnb's own small shapes, labels everything it
creates, and only ever lists or removes containers that carry this
installation's label.
"""

import functools
import threading
from dataclasses import dataclass, field

import docker
from django.conf import settings
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

LABEL_POOL = "tmpnb.pool"
LABEL_INSTALLATION = "tmpnb.installation"
LABEL_CONTAINER = "tmpnb.container"


class DockerError(Exception):
    """Docker refused a request or could not be reached."""


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: str
    pool: str
    container_port: int
    host_ip: str
    mem_limit: str = ""
    cpu_shares: int | None = None
    environment: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StartedContainer:
    docker_id: str
    host_ip: str
    host_port: int


@dataclass(frozen=True)
class ContainerInfo:
    docker_id: str
    name: str
    pool: str
    status: str  # Docker's: created, running, exited, dead, ...

    @property
    def is_running(self):
        return self.status == "running"


@functools.lru_cache(maxsize=2)
def _client(base_url, version, timeout):
    return docker.DockerClient(base_url=base_url, version=version, timeout=timeout)


def client():
    return _client(settings.DOCKER_HOST, settings.TMPNB_DOCKER_VERSION, settings.DOCKER_TIMEOUT)


@functools.lru_cache(maxsize=1)
def _docker_slots(size):
    return threading.BoundedSemaphore(size)


def docker_work():
    """Bounds the Docker calls one process makes at once (max_dock_workers)."""
    return _docker_slots(settings.TMPNB_MAX_DOCK_WORKERS)


def labels_for(pool_name, container_name=None):
    labels = {LABEL_INSTALLATION: settings.TMPNB_INSTALLATION, LABEL_POOL: pool_name}
    if container_name:
        labels[LABEL_CONTAINER] = container_name
    return labels


def start_container(spec):
    """Create and start a container; its port is published on a free host port.

    create + start rather than run: run pulls a missing image, and this
    service never reaches out to a registry.
    """
    port_key = f"{spec.container_port}/tcp"
    try:
        with docker_work():
            container = client().containers.create(
                spec.image,
                spec.command,
                name=spec.name,
                labels=labels_for(spec.pool, spec.name),
                ports={port_key: (spec.host_ip, None)},
                mem_limit=spec.mem_limit or None,
                cpu_shares=spec.cpu_shares,
                environment=spec.environment,
            )
            container.start()
            container.reload()
    except ImageNotFound:
        raise DockerError(f"image {spec.image} is not on this host (build or load it first)") from None
    except DockerException as error:
        remove_container(spec.name)
        raise DockerError(f"starting {spec.name}: {error}") from None
    bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(port_key)
    if not bindings:
        remove_container(container.id)
        raise DockerError(f"{spec.name} exited before its port was published")
    return StartedContainer(container.id, spec.host_ip, int(bindings[0]["HostPort"]))


def remove_container(docker_id):
    """Kill and remove; a container already gone (404) or going (409) is done."""
    try:
        with docker_work():
            client().api.remove_container(docker_id, force=True)
    except NotFound:
        pass
    except APIError as error:
        if error.status_code != 409:
            raise DockerError(f"removing {docker_id[:12]}: {error}") from None
    except DockerException as error:
        raise DockerError(f"removing {docker_id[:12]}: {error}") from None


def list_containers():
    """Every container of this installation, running or not, in one call."""
    label = f"{LABEL_INSTALLATION}={settings.TMPNB_INSTALLATION}"
    try:
        raw = client().api.containers(all=True, filters={"label": label})
    except DockerException as error:
        raise DockerError(f"listing containers: {error}") from None
    return [
        ContainerInfo(item["Id"], item["Names"][0].lstrip("/"), item["Labels"].get(LABEL_POOL, ""), item["State"])
        for item in raw
    ]


def image_exists(image):
    try:
        client().images.get(image)
    except ImageNotFound:
        return False
    except DockerException as error:
        raise DockerError(f"looking up image {image}: {error}") from None
    return True
