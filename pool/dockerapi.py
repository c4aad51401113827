"""The single-host Docker backend, and the Docker client the Swarm backend shares.

It turns the SDK's objects into tmpnb's own small shapes, labels everything it
creates, and only ever lists or removes containers that carry this
installation's label.
"""

import functools
import logging
import tarfile
import tempfile
import threading

import docker
from django.conf import settings
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from pool.backend import BackendError, ContainerInfo, ContainerSpec, StartedContainer  # noqa: F401 (the shapes it returns)

log = logging.getLogger(__name__)

LABEL_POOL = "tmpnb.pool"
LABEL_INSTALLATION = "tmpnb.installation"
LABEL_CONTAINER = "tmpnb.container"


class DockerError(BackendError):
    """Docker refused a request or could not be reached."""


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


def _create_options(spec):
    options = dict(
        # Hardening that any notebook image tolerates: no privilege gain through
        # setuid binaries, no capabilities, a bounded process count.
        security_opt=["no-new-privileges"],
        cap_drop=["ALL"],
        pids_limit=spec.pids_limit,
        name=spec.name,
        labels=labels_for(spec.pool, spec.name),
        mem_limit=spec.mem_limit or None,
        cpu_shares=spec.cpu_shares,
        cpu_quota=spec.cpu_quota,
        user=spec.user or None,
        volumes=spec.volumes or None,
        extra_hosts=spec.extra_hosts or None,
        environment=spec.environment,
    )
    if spec.host_network:
        options["network_mode"] = "host"
        return options
    if spec.publish and not spec.internal:
        options["ports"] = {f"{spec.container_port}/tcp": (spec.host_ip, None)}
    if spec.network:
        options["network"] = spec.network
    return options


def _started(container, spec):
    """Where the server answers (a StartedContainer), or None if nowhere."""
    if spec.host_network:
        return StartedContainer(container.id, spec.host_ip, spec.host_port)
    network_settings = container.attrs["NetworkSettings"]
    # Without a network of its own a container is on Docker's default bridge.
    network_ip = (network_settings["Networks"].get(spec.network or "bridge") or {}).get("IPAddress") or ""
    bindings = (network_settings["Ports"] or {}).get(f"{spec.container_port}/tcp")
    host_port = int(bindings[0]["HostPort"]) if bindings else None
    if not (network_ip or host_port):
        return None
    return StartedContainer(container.id, spec.host_ip if host_port else "", host_port,
                            network_ip=network_ip, network_port=spec.container_port if network_ip else None)


_network_lock = threading.Lock()


def ensure_network(name, pool, internal=False, bridge=""):
    """A labelled Docker bridge network, made once; an internal one has no route
    out. ``bridge`` names its Linux bridge, which the network guard's rules match."""
    try:
        # Docker may make two networks of one name (its duplicate check is best
        # effort), and the spawning threads of a worker start together.
        with _network_lock:
            # The name filter matches parts of names too.
            if not [network for network in client().networks.list(names=[name]) if network.name == name]:
                options = {"com.docker.network.bridge.name": bridge} if bridge else None
                client().networks.create(name, internal=internal, labels=labels_for(pool), options=options,
                                         check_duplicate=True)
    except DockerException as error:
        raise DockerError(f"creating network {name}: {error}") from None


def remove_networks():
    """Remove the networks of this installation; one still in use stays (and is logged)."""
    label = f"{LABEL_INSTALLATION}={settings.TMPNB_INSTALLATION}"
    try:
        networks = client().networks.list(filters={"label": label})
    except DockerException as error:
        raise DockerError(f"listing networks: {error}") from None
    for network in networks:
        try:
            network.remove()
        except NotFound:
            pass
        except DockerException as error:
            log.warning("network %s not removed: %s", network.name, error)


def start_container(spec):
    """Create and start a container; it answers at its address on its Docker
    network and, where the spec publishes it, on a free host port (on the
    host's network: the port the server binds itself).

    create + start rather than run: run pulls a missing image, and this
    service never reaches out to a registry.
    """
    try:
        with docker_work():
            container = client().containers.create(spec.image, spec.command, **_create_options(spec))
            container.start()
            container.reload()
    except ImageNotFound:
        raise DockerError(f"image {spec.image} is not on this host (build or load it first)") from None
    except DockerException as error:
        remove_container(spec.name)
        raise DockerError(f"starting {spec.name}: {error}") from None
    started = _started(container, spec)
    if started is None:
        remove_container(container.id)
        raise DockerError(f"{spec.name} exited before it had an address")
    return started


def copy_out(docker_id, path, destination):
    """Copy ``path`` out of a container into the folder ``destination``."""
    try:
        chunks, _ = client().api.get_archive(docker_id, path)
        with tempfile.TemporaryFile() as archive:
            for chunk in chunks:
                archive.write(chunk)
            archive.seek(0)
            with tarfile.open(fileobj=archive) as tar:
                # The "data" filter refuses links and paths that leave the folder.
                tar.extractall(destination, filter="data")
    except (DockerException, tarfile.TarError) as error:
        raise DockerError(f"copying {path} out of {docker_id[:12]}: {error}") from None


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
