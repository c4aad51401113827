"""The notebook network's guard, put in place as the service starts and taken
away as it stops for good (pool/netguard.py holds the rules)."""

import logging

from django.conf import settings

from pool import netguard
from pool.models import Event
from pool.services.events import record_event

log = logging.getLogger(__name__)


def guard_applies() -> bool:
    """The guard is on, and the notebooks' bridges are on this machine."""
    return bool(settings.TMPNB_NETWORK_GUARD) and settings.TMPNB_BACKEND == "docker" and settings.DOCKER_HOST.startswith("unix://")


def guard_network() -> bool:
    """Install the rules; when the host will not have them, say so in the log
    and the event log and carry on (notebooks then reach the host and
    169.254.0.0/16). Returns whether the guard is in place."""
    if not guard_applies():
        return False
    try:
        netguard.install()
    except netguard.GuardError as error:
        message = f"notebook network not guarded: {error} (set TMPNB_NETWORK_GUARD=false to run without it)"
        log.warning(message)
        record_event(Event.Kind.FAILURE, message, actor="network guard")
        return False
    return True


def unguard_network() -> None:
    """Remove the rules; a failure is logged, the service stops anyway."""
    if not guard_applies():
        return
    try:
        netguard.remove()
    except netguard.GuardError as error:
        log.warning("network guard not removed: %s", error)
