"""The contract of a backend (where notebooks run), and the shapes it takes and returns.

A backend turns the outside system's answers into the shapes below. Every
call has a timeout and raises ``BackendError`` (or a subclass) when the system
refuses or does not answer; a backend labels what it creates and lists or
removes nothing else. A Kubernetes backend would be one more module, designed
in docs/kubernetes.md.
"""

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Protocol


class BackendError(Exception):
    """The backend refused a request or could not be reached. ``unreachable``:
    its engine did not answer at all (restarting, its socket gone), so the
    same request may well work a few seconds later."""

    def __init__(self, message: str = "", *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True, kw_only=True)
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
    volumes: list[str] = field(default_factory=list)  # "source:target:mode"
    extra_hosts: dict[str, str] = field(default_factory=dict)  # name -> address
    environment: dict[str, str] = field(default_factory=dict)
    pids_limit: int = 256


ROUTE_TO = ("published", "container")


@dataclass(frozen=True, kw_only=True)
class StartedContainer:
    """Where a started server answers: on a host address (a published port, or
    the host's own network; empty when nothing is published), and at its
    address on its Docker network, which only the Docker host itself reaches
    (empty where it has none)."""

    backend_id: str
    host_ip: str
    host_port: int | None
    node: str = ""  # the machine it runs on, where there are several
    network_ip: str = ""
    network_port: int | None = None

    def address(self, route_to: str) -> tuple[str, int | None] | None:
        """(ip, port) for the proxy: the kind ``route_to`` names (one of
        ROUTE_TO) where the container has it, the other one otherwise."""
        network = (self.network_ip, self.network_port) if self.network_ip else None
        published = (self.host_ip, self.host_port) if self.host_port else None
        first, second = (network, published) if route_to == "container" else (published, network)
        return first or second


@dataclass(frozen=True)
class NotebookUser:
    uid: int
    gid: int
    folder: str


@dataclass(frozen=True, kw_only=True)
class ContainerInfo:
    backend_id: str
    name: str
    pool: str
    status: str  # Docker's: created, running, exited, dead, ...
    node: str = ""
    node_down: bool = False  # its machine left the cluster: lost with it

    @property
    def is_running(self) -> bool:
        return self.status == "running"


class Backend(Protocol):
    """What pool/services needs of a backend; each module of pool/backends provides it."""

    def image_exists(self, image: str) -> bool:
        """The image is there to start from (never pulled)."""

    def image_labels(self, image: str) -> dict[str, str]:
        """The labels the image was built with."""

    def copy_out_of_image(self, image: str, *, pool: str, path: str, destination: str, timeout: float | None = None) -> None:
        """Copy a folder of the image as built (not of a running notebook) into
        the folder ``destination``; what it leaves behind carries ``pool``'s labels."""

    def ensure_network(self, name: str, *, pool: str, internal: bool = False, bridge: str = "") -> None:
        """A network of this installation, made once; an internal one has no way
        out; ``bridge`` names its Linux bridge where there is one (pool/netguard.py matches it)."""

    def remove_networks(self) -> None:
        """Remove the installation's networks, once its containers are gone."""

    def start_container(self, spec: ContainerSpec) -> StartedContainer:
        """Start one notebook server and return where it answers; on failure
        raise ``BackendError`` and leave nothing behind."""

    def remove_container(self, backend_id: str) -> None:
        """Stop and remove, by id or name; already gone is done."""

    def list_containers(self) -> list[ContainerInfo]:
        """Everything labelled with this installation, in one or a few calls
        (the heartbeat lists once per tick). ``node_down`` tells a notebook
        lost with its machine from one that stopped."""

    def disk_usage(self) -> dict[str, int]:
        """{container name: bytes it has written} for this installation's
        running containers, in one call per machine; those it cannot measure
        (a machine that does not answer) are missing."""

    def copy_out(self, backend_id: str, *, path: str, destination: str, timeout: float | None = None) -> None:
        """Copy a folder out of a notebook into the folder ``destination``,
        within ``timeout`` seconds (DOCKER_TIMEOUT by default)."""

    def archive_out(self, backend_id: str, path: str, *, timeout: float) -> Generator[bytes, None, None]:
        """The folder ``path`` of a notebook (running or stopped) as a tar
        stream, read as it is consumed; a relative path starts at the
        container's working directory. A stream not done within ``timeout``
        seconds raises ``BackendError``, even while a read is stalled."""

    def copy_in(self, backend_id: str, *, tar_path: str, destination: str) -> None:
        """Extract the tar file ``tar_path`` (on this machine) into the folder
        ``destination`` of a notebook, keeping its members' uid and gid."""

    def path_exists(self, backend_id: str, path: str) -> bool:
        """Whether the absolute ``path`` (a file, a folder, a link) exists in a notebook."""

    def notebook_user(self, backend_id: str) -> NotebookUser:
        """The uid and gid the notebook server runs as, and its working folder
        (the notebook's root folder)."""
