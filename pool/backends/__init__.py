"""Where notebooks run: the contract (base.py), the shared Docker client and
labels (client.py), one module per backend, and the one the settings chose."""

from django.conf import settings

from pool.backends import docker, swarm
from pool.backends.base import Backend

BACKENDS: dict[str, Backend] = {"docker": docker, "swarm": swarm}


def get_backend() -> Backend:
    return BACKENDS[settings.TMPNB_BACKEND]


def copies_files() -> bool:
    """Whether the backend can copy a notebook's files out and in: a Swarm
    only where the engines of its nodes are known (TMPNB_SWARM_NODE_ENGINES)."""
    return settings.TMPNB_BACKEND == "docker" or bool(settings.TMPNB_SWARM_NODE_ENGINES)
