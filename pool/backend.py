"""Where notebooks run: the backend interface, and the backend the settings chose.

A backend is a module (``TMPNB_BACKEND`` picks it from ``BACKENDS``) that
turns the outside system's answers into the shapes below and provides:

- ``image_exists(image) -> bool``: the image is there to start from (never pulled).
- ``ensure_network(name, pool, internal=False, bridge="")``: a network of this
  installation, made once; an internal one has no way out; ``bridge`` names
  its Linux bridge where there is one (pool/netguard.py matches it).
- ``remove_networks()``: remove the installation's networks, once its containers are gone.
- ``start_container(spec: ContainerSpec) -> StartedContainer``: start one
  notebook server and return where it answers; on failure raise
  ``BackendError`` and leave nothing behind.
- ``remove_container(docker_id_or_name)``: stop and remove; already gone is done.
- ``list_containers() -> list[ContainerInfo]``: everything labelled with this
  installation, in one or a few calls (the heartbeat lists once per tick).
  ``node_down`` tells a notebook lost with its machine from one that stopped.
- ``copy_out(docker_id, path, destination)``: copy a folder out of a notebook.
- ``archive_out(docker_id, path)``: that folder as a tar stream (an iterator
  of bytes, read as it is consumed); a relative path starts at the
  container's working directory.
- ``copy_in(docker_id, tar_path, destination)``: extract a tar file on this
  machine into a folder of a notebook, keeping its members' uid and gid.

Every call has a timeout and raises ``BackendError`` (or a subclass) when the
system refuses or does not answer; a backend labels what it creates and lists
or removes nothing else. A Kubernetes backend would be one more module: a pod
per notebook (a Service or the pod IP as its address), labels as here.
"""

import importlib
from dataclasses import dataclass, field

from django.conf import settings

BACKENDS = {"docker": "pool.dockerapi", "swarm": "pool.swarmapi"}


class BackendError(Exception):
    """The backend refused a request or could not be reached."""


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
    cpu_quota: int | None = None
    user: str = ""
    host_network: bool = False
    host_port: int | None = None  # with host_network: the port the server binds itself
    network: str = ""
    # On an internal network (no way out): nothing is published, and the proxy
    # reaches the server at its address on that network.
    internal: bool = False
    # Publish the port on host_ip. Without it the server is reached at its
    # address on its network only (which the Docker host itself reaches).
    publish: bool = True
    volumes: list = field(default_factory=list)
    extra_hosts: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    pids_limit: int = 256


ROUTE_TO = ("published", "container")


@dataclass(frozen=True)
class StartedContainer:
    """Where a started server answers: on a host address (a published port, or
    the host's own network; empty when nothing is published), and at its
    address on its Docker network, which only the Docker host itself reaches
    (empty where it has none)."""

    docker_id: str
    host_ip: str
    host_port: int | None
    node: str = ""  # the machine it runs on, where there are several
    network_ip: str = ""
    network_port: int | None = None

    def address(self, route_to):
        """(ip, port) for the proxy: the kind ``route_to`` names (one of
        ROUTE_TO) where the container has it, the other one otherwise."""
        network = (self.network_ip, self.network_port) if self.network_ip else None
        published = (self.host_ip, self.host_port) if self.host_port else None
        first, second = (network, published) if route_to == "container" else (published, network)
        return first or second


@dataclass(frozen=True)
class ContainerInfo:
    docker_id: str
    name: str
    pool: str
    status: str  # Docker's: created, running, exited, dead, ...
    node: str = ""
    node_down: bool = False  # its machine left the cluster: lost with it

    @property
    def is_running(self):
        return self.status == "running"


def get_backend():
    return importlib.import_module(BACKENDS[settings.TMPNB_BACKEND])
