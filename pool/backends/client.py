"""The Docker client both backends share: one client made lazily from the
settings, the translation of the SDK's errors into ``DockerError``, the bound
on Docker calls a process makes at once, and the labels that mark what this
installation owns (it lists and removes nothing else).
"""

import contextlib
import functools
import threading
from collections.abc import Iterator

import docker
import requests
from django.conf import settings
from docker.errors import DockerException, ImageNotFound

from pool.backends.base import BackendError
from tmpnb_site.concurrency import turn_set_aside

LABEL_POOL = "tmpnb.pool"
LABEL_INSTALLATION = "tmpnb.installation"
LABEL_CONTAINER = "tmpnb.container"


class DockerError(BackendError):
    """Docker refused a request or could not be reached."""


@contextlib.contextmanager
def docker_errors(doing: str, *, error_class: type[BackendError] = DockerError) -> Iterator[None]:
    """Turn whatever the SDK raises into ``error_class``: DockerException for
    a refusal, and requests' ConnectionError or ReadTimeout, which docker-py
    lets through once its client exists (the engine restarted or went quiet);
    also an OSError of this machine's side of the call (a file to send that
    is gone), which the callers would not expect either."""
    try:
        yield
    except (DockerException, requests.RequestException, OSError) as error:
        raise error_class(f"{doing}: {error}", unreachable=_no_answer(error)) from None


def _no_answer(error: BaseException | None) -> bool:
    """Whether ``error`` is, or was raised from, a connection that never got
    an answer (docker-py wraps the one of its first call, asking the version)."""
    while error is not None:
        if isinstance(error, requests.ConnectionError):
            return True
        error = error.__cause__ or error.__context__
    return False


@functools.lru_cache(maxsize=2)
def _client(base_url: str, version: str, timeout: int) -> docker.DockerClient:
    return docker.DockerClient(base_url=base_url, version=version, timeout=timeout)


def client() -> docker.DockerClient:
    return _client(settings.DOCKER_HOST, settings.TMPNB_DOCKER_VERSION, settings.DOCKER_TIMEOUT)


def engine_client(base_url: str) -> docker.DockerClient:
    """A client of one more engine (a Swarm node's, TMPNB_SWARM_NODE_ENGINES):
    one on the network only over mutual TLS, with TMPNB_SWARM_ENGINE_CERTS.
    Made without a call: it speaks the API version the manager's client
    speaks (TMPNB_DOCKER_VERSION), as a Swarm's engines are upgraded together."""
    return _engine_client(base_url, settings.TMPNB_SWARM_ENGINE_CERTS, client().api.api_version, settings.DOCKER_TIMEOUT)


@functools.lru_cache(maxsize=64)
def _engine_client(base_url: str, certs: str, version: str, timeout: int) -> docker.DockerClient:
    tls: docker.tls.TLSConfig | bool = False
    if base_url.startswith("tcp://"):
        tls = docker.tls.TLSConfig(client_cert=(f"{certs}/cert.pem", f"{certs}/key.pem"), ca_cert=f"{certs}/ca.pem", verify=True)
    engine = docker.DockerClient(base_url=base_url, version=version, timeout=timeout, tls=tls)
    # requests would let REQUESTS_CA_BUNDLE replace the engine's CA (psf/requests#3829),
    # and HTTPS_PROXY carry the client's certificate elsewhere.
    engine.api.trust_env = False
    return engine


@functools.lru_cache(maxsize=1)
def _docker_slots(size: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(size)


@contextlib.contextmanager
def docker_work() -> Iterator[None]:
    """Bounds the Docker calls one process makes at once (max_dock_workers).
    The wait for a slot is bounded too: Celery's time limits do nothing in
    the threads pool, so every wait of a task needs its own deadline."""
    slots = _docker_slots(settings.TMPNB_MAX_DOCK_WORKERS)
    wait = 2 * settings.DOCKER_TIMEOUT
    with turn_set_aside():  # a web request's Docker call lets other requests run meanwhile
        if not slots.acquire(timeout=wait):
            raise DockerError(f"no Docker slot came free within {wait}s (all TMPNB_MAX_DOCK_WORKERS busy)")
        try:
            yield
        finally:
            slots.release()


def labels_for(pool_name: str, *, container_name: str = "") -> dict[str, str]:
    labels = {LABEL_INSTALLATION: settings.TMPNB_INSTALLATION, LABEL_POOL: pool_name}
    if container_name:
        labels[LABEL_CONTAINER] = container_name
    return labels


def installation_filter() -> dict[str, str]:
    """The label filter of a list call: this installation's objects only."""
    return {"label": f"{LABEL_INSTALLATION}={settings.TMPNB_INSTALLATION}"}


def image_labels(image: str) -> dict[str, str]:
    """The labels of an image on this host (such as build-jupyter's tmpnb.recipe)."""
    with docker_errors(f"looking up image {image}"):
        return client().images.get(image).labels or {}


def image_exists(image: str) -> bool:
    with docker_errors(f"looking up image {image}"):
        try:
            client().images.get(image)
        except ImageNotFound:
            return False
    return True
