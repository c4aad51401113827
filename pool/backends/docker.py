"""The single-host Docker backend: containers on one engine.

It turns the SDK's objects into tmpnb's own small shapes (pool.backends.base),
labels everything it creates, and only ever lists or removes containers that
carry this installation's label (pool.backends.client).
"""

import contextlib
import logging
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, cast
from urllib.parse import quote

import requests
import urllib3
from django.conf import settings
from docker import APIClient, DockerClient
from docker.errors import APIError, DockerException, ImageNotFound, NotFound, create_api_error_from_http_exception
from docker.models.containers import Container as DockerContainer
from docker.models.networks import Network

from pool.backends.base import ContainerInfo, ContainerSpec, NotebookUser, StartedContainer
from pool.backends.client import (
    LABEL_CONTAINER,
    LABEL_POOL,
    DockerError,
    client,
    docker_errors,
    docker_work,
    image_exists,  # noqa: F401 (this backend's image_exists)
    image_labels,  # noqa: F401 (this backend's image_labels)
    installation_filter,
    labels_for,
)

log = logging.getLogger(__name__)

Engine = Callable[[], DockerClient]


def _create_options(spec: ContainerSpec) -> dict[str, Any]:
    options: dict[str, Any] = dict(
        # Hardening that any notebook image tolerates: no privilege gain through
        # setuid binaries, no capabilities, a bounded process count.
        security_opt=["no-new-privileges"],
        cap_drop=["ALL"],
        pids_limit=spec.pids_limit,
        name=spec.name,
        labels=labels_for(spec.pool, container_name=spec.name),
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


def _started(container: DockerContainer, spec: ContainerSpec) -> StartedContainer | None:
    """Where the server answers (a StartedContainer), or None if nowhere."""
    backend_id = cast(str, container.id)  # made by the engine, so it has one
    if spec.host_network:
        return StartedContainer(backend_id=backend_id, host_ip=spec.host_ip, host_port=spec.host_port)
    network_settings = container.attrs["NetworkSettings"]
    # Without a network of its own a container is on Docker's default bridge.
    network_ip = (network_settings["Networks"].get(spec.network or "bridge") or {}).get("IPAddress") or ""
    bindings = (network_settings["Ports"] or {}).get(f"{spec.container_port}/tcp")
    host_port = int(bindings[0]["HostPort"]) if bindings else None
    if not (network_ip or host_port):
        return None
    return StartedContainer(
        backend_id=backend_id,
        host_ip=spec.host_ip if host_port else "",
        host_port=host_port,
        network_ip=network_ip,
        network_port=spec.container_port if network_ip else None,
    )


_network_lock = threading.Lock()


def ensure_network(name: str, *, pool: str, internal: bool = False, bridge: str = "") -> None:
    """A labelled Docker bridge network, made once; an internal one has no route
    out. ``bridge`` names its Linux bridge, which the network guard's rules match."""
    # Docker may make two networks of one name (its duplicate check is best
    # effort), and the spawning threads of a worker start together.
    with docker_errors(f"creating network {name}"), _network_lock:
        options = {"com.docker.network.bridge.name": bridge} if bridge else None
        for attempt in range(NETWORK_ATTEMPTS):
            if _network_exists(name):
                return
            try:
                client().networks.create(name, internal=internal, labels=labels_for(pool), options=options, check_duplicate=True)
                return
            except APIError:
                # Another process (a second worker) made it between our look and
                # our create: Docker refuses ours with 409 (same name) or, when
                # both creates were in flight at once, 403 (same bridge name).
                # A 403 also comes while the network of that bridge is still
                # being removed (stop_pools): look again a moment later.
                if attempt == NETWORK_ATTEMPTS - 1:
                    if _network_exists(name):
                        return
                    raise
                time.sleep(NETWORK_CREATE_PAUSE)


def _network_exists(name: str) -> bool:
    # The name filter matches parts of names too.
    return any(network.name == name for network in client().networks.list(names=[name]))


def remove_networks() -> None:
    """Remove the networks of this installation; one still in use stays (and is logged)."""
    with docker_errors("listing networks"):
        networks = client().networks.list(filters=installation_filter())
    for network in networks:
        _remove_network(network)


NETWORK_ATTEMPTS = 4  # creating a network whose bridge an older one still holds
NETWORK_CREATE_PAUSE = 0.5  # seconds between attempts
NETWORK_REMOVE_TRIES = 10
NETWORK_REMOVE_PAUSE = 0.5  # seconds between tries


def _remove_network(network: Network) -> None:
    # Docker answers 403 "has active endpoints" for a moment after many of a
    # network's containers were removed at once (deploy/down right after a drain).
    for attempt in range(1, NETWORK_REMOVE_TRIES + 1):
        try:
            network.remove()
            return
        except NotFound:
            return
        except APIError as error:
            if error.status_code != 403 or attempt == NETWORK_REMOVE_TRIES:
                log.warning("network %s not removed: %s", network.name, error)
                return
        except (DockerException, requests.RequestException) as error:
            log.warning("network %s not removed: %s", network.name, error)
            return
        time.sleep(NETWORK_REMOVE_PAUSE)


def start_container(spec: ContainerSpec) -> StartedContainer:
    """Create and start a container; it answers at its address on its Docker
    network and, where the spec publishes it, on a free host port (on the
    host's network: the port the server binds itself).

    create + start rather than run: run pulls a missing image, and this
    service never reaches out to a registry.
    """
    try:
        with docker_errors(f"starting {spec.name}"), docker_work():
            try:
                container = client().containers.create(spec.image, spec.command, **_create_options(spec))
            except ImageNotFound:
                raise DockerError(f"image {spec.image} is not on this host (build or load it first)") from None
            container.start()
            container.reload()
    except DockerError:
        _remove_left_behind(spec.name)
        raise
    started = _started(container, spec)
    if started is None:
        _remove_left_behind(cast(str, container.id))
        raise DockerError(f"{spec.name} exited before it had an address")
    return started


def _remove_left_behind(backend_id: str) -> None:
    # The failure being reported matters more; the reconciler removes what stays.
    with contextlib.suppress(DockerError):
        remove_container(backend_id)


ARCHIVE_CHUNK = 64 * 1024


def archive_out(backend_id: str, path: str, *, timeout: float) -> Generator[bytes, None, None]:
    return archive_out_on(client, backend_id, path, timeout=timeout)


def archive_out_on(engine: Engine, backend_id: str, path: str, *, timeout: float) -> Generator[bytes, None, None]:
    """The folder or file ``path`` of a container (running or stopped) as a
    tar stream: an iterator of bytes, read as it is consumed (so a caller can
    stop or cap it). A relative path is taken from the container's working
    directory. The whole stream is bounded by ``timeout`` seconds: a read
    that stalls past it raises DockerError. The calls on files named ``_on``
    take the engine to ask (DOCKER_HOST's, or a Swarm node's) as a function
    that makes its client, called where its errors are translated: making
    a client asks the engine its API version."""
    deadline = time.monotonic() + timeout
    doing = f"copying {path} out of {backend_id[:12]}"
    with docker_errors(doing):
        api = engine().api
        # Not api.get_archive: its stream turns the socket's timeout off
        # (docker-py's _stream_raw_result), and a stalled read then waits
        # forever. The same request, on the client's session (a requests.Session).
        url = f"{api.base_url}/v{api.api_version}/containers/{quote(backend_id, safe='')}/archive"
        # "identity": asked for gzip (requests' default), Docker compresses the tar.
        headers = {"Accept-Encoding": "identity"}
        response = api.get(url, params={"path": _in_container(api, backend_id, path)}, headers=headers, stream=True, timeout=settings.DOCKER_TIMEOUT)
        try:
            try:
                response.raise_for_status()
            except requests.HTTPError as error:
                raise create_api_error_from_http_exception(error) from None  # Docker's own words: "No such container"
            yield from _read_until(response, deadline, doing)
        finally:
            response.close()


def _read_until(response: requests.Response, deadline: float, doing: str) -> Generator[bytes, None, None]:
    """The body of a streamed ``response``, each read of its socket bounded
    by what is left before ``deadline`` (and by DOCKER_TIMEOUT)."""
    connection = response.raw.connection
    sock = connection.sock if connection is not None else None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DockerError(f"{doing}: not done in time")
        if sock is not None:
            sock.settimeout(min(left, settings.DOCKER_TIMEOUT))
        try:
            chunk = response.raw.read1(ARCHIVE_CHUNK, decode_content=False)
        except (urllib3.exceptions.TimeoutError, TimeoutError):
            raise DockerError(f"{doing}: not done in time (the read stalled)") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:  # the engine went away mid-stream
            raise DockerError(f"{doing}: {error}") from None
        if not chunk:
            return
        yield chunk


def copy_in(backend_id: str, *, tar_path: str, destination: str) -> None:
    copy_in_on(client, backend_id, tar_path=tar_path, destination=destination)


def copy_in_on(engine: Engine, backend_id: str, *, tar_path: str, destination: str) -> None:
    """Extract the tar file ``tar_path`` (on this machine) into the folder
    ``destination`` of a container. Docker keeps the uid and gid of the tar's
    members: write them as the notebook's user (notebook_user); its copyUIDGID
    would look the container's user up on the host, where it is unknown."""
    doing = f"copying {tar_path} into {backend_id[:12]}:{destination}"
    with docker_errors(doing), docker_work(), open(tar_path, "rb") as tar:
        api = engine().api
        if not api.put_archive(backend_id, _in_container(api, backend_id, destination), tar):
            raise DockerError(f"{doing}: refused")


def path_exists(backend_id: str, path: str) -> bool:
    return path_exists_on(client, backend_id, path)


def path_exists_on(engine: Engine, backend_id: str, path: str) -> bool:
    """Whether ``path`` exists in a container: Docker's HEAD of its archive
    (a stat, no exec: any image answers, running or not)."""
    with docker_errors(f"looking for {path} in {backend_id[:12]}"), docker_work():
        api = engine().api
        url = f"{api.base_url}/v{api.api_version}/containers/{quote(backend_id, safe='')}/archive"
        response = api.head(url, params={"path": path}, timeout=settings.DOCKER_TIMEOUT)
        if response.status_code == 404 and "X-Docker-Container-Path-Stat" not in response.headers:
            # A missing path and a missing container both answer 404; only the container's absence is an error.
            api.inspect_container(backend_id)
            return False
        try:
            response.raise_for_status()
        except requests.HTTPError as error:
            raise create_api_error_from_http_exception(error) from None
        return True


def _in_container(api: APIClient, backend_id: str, path: str) -> str:
    if path.startswith("/"):
        return path
    working_dir = api.inspect_container(backend_id)["Config"]["WorkingDir"]
    if not working_dir:
        raise DockerError(f"{backend_id[:12]} has no working directory to find {path!r} in")
    return f"{working_dir.rstrip('/')}/{path}"


def copy_out(backend_id: str, *, path: str, destination: str, timeout: float | None = None) -> None:
    copy_out_on(client, backend_id, path=path, destination=destination, timeout=timeout)


def copy_out_on(engine: Engine, backend_id: str, *, path: str, destination: str, timeout: float | None = None) -> None:
    """Copy ``path`` out of a container into the folder ``destination``,
    within ``timeout`` seconds (DOCKER_TIMEOUT by default)."""
    timeout = timeout or settings.DOCKER_TIMEOUT
    try:
        with tempfile.TemporaryFile() as archive:
            for chunk in archive_out_on(engine, backend_id, path, timeout=timeout):
                archive.write(chunk)
            archive.seek(0)
            with tarfile.open(fileobj=archive) as tar:
                # The "data" filter refuses links and paths that leave the folder.
                tar.extractall(destination, filter="data")
    except (tarfile.TarError, OSError) as error:  # OSError: this machine's disk (full, not writable)
        raise DockerError(f"copying {path} out of {backend_id[:12]}: {error}") from None


def copy_out_of_image(image: str, *, pool: str, path: str, destination: str, timeout: float | None = None) -> None:
    """Copy the folder ``path`` of ``image`` as built (out of a container
    created from it and never started) into the folder ``destination``."""
    with docker_errors(f"copying {path} out of image {image}"), docker_work():
        created = client().containers.create(image, labels=labels_for(pool), network_disabled=True)
    try:
        copy_out(cast(str, created.id), path=path, destination=destination, timeout=timeout)
    finally:
        _remove_left_behind(cast(str, created.id))


def notebook_user(backend_id: str) -> NotebookUser:
    return notebook_user_on(client, backend_id)


def notebook_user_on(engine: Engine, backend_id: str) -> NotebookUser:
    """Who the notebook server runs as, and its working folder (Jupyter's
    root folder in the usual images), asked of the running container."""
    with docker_errors(f"asking {backend_id[:12]} for its user"), docker_work():
        code, output = engine().containers.get(backend_id).exec_run(["sh", "-c", "id -u; id -g; pwd"], demux=False)
    output = cast(bytes, output)  # not streamed: the whole answer at once
    lines = output.decode(errors="replace").split()
    if code != 0 or len(lines) != 3 or not (lines[0].isdigit() and lines[1].isdigit()):
        raise DockerError(f"asking {backend_id[:12]} for its user: unexpected answer {output[:200]!r}")
    return NotebookUser(uid=int(lines[0]), gid=int(lines[1]), folder=lines[2])


def remove_container(backend_id: str) -> None:
    """Kill and remove; a container already gone (404) or going (409) is done."""
    with docker_errors(f"removing {backend_id[:12]}"), docker_work():
        try:
            client().api.remove_container(backend_id, force=True)
        except NotFound:
            pass
        except APIError as error:
            if error.status_code != 409:
                raise


def list_containers() -> list[ContainerInfo]:
    """Every container of this installation, running or not, in one call."""
    with docker_errors("listing containers"):
        raw = client().api.containers(all=True, filters=installation_filter())
    return [
        ContainerInfo(backend_id=item["Id"], name=item["Names"][0].lstrip("/"), pool=item["Labels"].get(LABEL_POOL, ""), status=item["State"]) for item in raw
    ]


def disk_usage() -> dict[str, int]:
    return disk_usage_on(client)


def disk_usage_on(engine: Engine) -> dict[str, int]:
    """{name: bytes written} of this installation's running containers on
    ``engine``: the size of each one's writable layer (SizeRw), where the home
    folder of the usual images lives. One call, which has Docker walk every
    layer's files: 0.1 s for 10 containers of 2,000 files, 0.4 s for one of
    100,000. The name is the notebook's (its label), which a Swarm task's
    container does not carry as its own name."""
    with docker_errors("measuring the containers' disk"), docker_work():
        raw = engine().api.containers(filters=installation_filter(), size=True)
    return {(item["Labels"] or {}).get(LABEL_CONTAINER) or item["Names"][0].lstrip("/"): item.get("SizeRw") or 0 for item in raw}
