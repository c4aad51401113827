"""Where notebooks run: the contract (base.py), the shared Docker client and
labels (client.py), one module per backend, and the one the settings chose."""

from django.conf import settings

from pool.backends import docker, swarm
from pool.backends.base import Backend

BACKENDS: dict[str, Backend] = {"docker": docker, "swarm": swarm}


def get_backend() -> Backend:
    return BACKENDS[settings.TMPNB_BACKEND]
