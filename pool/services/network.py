"""The notebook network's guard: put in place as the worker starts, checked
and put back by every heartbeat, taken away as the service stops for good
(pool/netguard.py holds the rules). Each machine's last finding is a
GuardCheck row, which the dashboard shows when something is wrong."""

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.utils import timezone

from pool import netguard
from pool.backends import swarm
from pool.backends.base import BackendError
from pool.models import Event, GuardCheck
from pool.services.events import record_event

log = logging.getLogger(__name__)
T = TypeVar("T")

ACTOR = "network guard"
# The host's resolvers; where they are on loopback (systemd-resolved's stub),
# Docker forwards to the upstream list instead.
RESOLV_CONF = Path("/etc/resolv.conf")
UPSTREAM_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")
PUT_BACK_SHOWN = timedelta(hours=24)  # how long the dashboard mentions a guard put back


def guard_applies() -> bool:
    """The guard is on, and the notebooks' bridges are on this machine or on
    Swarm nodes whose engines TMPNB_SWARM_NODE_ENGINES names."""
    return bool(settings.TMPNB_NETWORK_GUARD) and bool(_machines())


def _machines() -> dict[str, netguard.Runner]:
    """Each machine whose notebooks the guard covers, by host name, and how to run its iptables."""
    if settings.TMPNB_BACKEND == "swarm":
        return {hostname: _on_node(hostname) for hostname in settings.TMPNB_SWARM_NODE_ENGINES}
    if settings.TMPNB_BACKEND == "docker" and settings.DOCKER_HOST.startswith("unix://"):
        return {socket.gethostname(): netguard.run_here}
    return {}


def _on_node(hostname: str) -> netguard.Runner:
    def run(command: Sequence[str], stdin: str | None) -> netguard.Ran:
        try:
            return netguard.Ran(*swarm.run_on_node(hostname, command, stdin, timeout=netguard.TIMEOUT))
        except BackendError as error:
            raise netguard.GuardError(str(error)) from None

    return run


def guard_policy(on: netguard.Runner = netguard.run_here) -> netguard.Policy:
    """The settings' policy for the machine ``on`` runs on: its own resolvers."""
    return netguard.Policy(
        deny=tuple(settings.TMPNB_GUARD_DENY),
        allow=tuple(settings.TMPNB_GUARD_ALLOW),
        resolvers=resolvers_on(on),
        peers=settings.TMPNB_GUARD_PEERS,
    )


def resolvers_on(on: netguard.Runner) -> tuple[str, ...]:
    """The IPv4 resolvers Docker's DNS asks on the notebooks' behalf, read on
    the machine itself (each Swarm node has its own): they may sit in a
    denied range (a cloud's resolver at 10.x or 169.254.x)."""
    found = _nameservers(on, RESOLV_CONF)
    if found and all(address.is_loopback for address in found):
        found = _nameservers(on, UPSTREAM_RESOLV_CONF)
    return tuple(str(address) for address in found if address.version == 4 and not address.is_loopback)


def _nameservers(on: netguard.Runner, path: Path) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    read = on(["cat", str(path)], None)
    if read.returncode != 0:  # no such file there
        return []
    found = []
    for line in read.stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(ipaddress.ip_address(words[1].split("%")[0]))
            except ValueError:
                continue
    return found


def guard_network() -> bool:
    """Install the rules on every machine. Where one will not have them, say so
    (log, event log, dashboard) and carry on: its notebooks then reach what the
    guard denies (a Swarm node gets no new ones). Returns whether the guard is
    in place everywhere."""
    if not guard_applies():
        return False
    in_place = True
    for host, outcome in _on_each_machine(lambda on: netguard.install(guard_policy(on), on=on)).items():
        if isinstance(outcome, netguard.GuardError):
            _found(host, problem=_problem(outcome))
            in_place = False
        else:
            _found(host)
    return in_place


def check_guard(*, now: datetime | None = None) -> None:
    """For the heartbeat: a firewall reload, a reboot or a hand removed the
    rules on a machine: put them back, and tell the organiser it happened."""
    if not guard_applies():
        return

    def put_back(on: netguard.Runner) -> list[str]:
        policy = guard_policy(on)
        gaps = netguard.missing(policy, on=on)
        if gaps:
            netguard.install(policy, on=on)
        return gaps

    for host, gaps in _on_each_machine(put_back).items():
        if isinstance(gaps, netguard.GuardError):
            _found(host, problem=_problem(gaps), now=now)
            continue
        if gaps:
            message = f"network guard on {host} was not in place ({'; '.join(gaps)}): put back"
            log.error(message)
            record_event(Event.Kind.FAILURE, message, actor=ACTOR)
        _found(host, put_back=bool(gaps), now=now)


def _on_each_machine(work: Callable[[netguard.Runner], T]) -> dict[str, T | netguard.GuardError]:
    """``work`` on every machine at once (a Swarm node's iptables run in a
    container of its own, which takes a while), each machine's answer or error."""
    machines = _machines()

    def attempt(on: netguard.Runner) -> T | netguard.GuardError:
        try:
            return work(on)
        except netguard.GuardError as error:
            return error

    with ThreadPoolExecutor(max(len(machines), 1)) as threads:
        return dict(zip(machines, threads.map(attempt, machines.values()), strict=True))


def _problem(error: netguard.GuardError) -> str:
    consequence = "; it gets no new notebooks" if settings.TMPNB_BACKEND == "swarm" else ""
    return f"notebook network not guarded: {error}{consequence} (set TMPNB_NETWORK_GUARD=false to run without it)"


def _found(host: str, *, problem: str = "", put_back: bool = False, now: datetime | None = None) -> None:
    """Record a machine's guard; a new problem is logged once, not every tick.
    A Swarm node is labelled as guarded or not, which places notebooks."""
    now = now or timezone.now()
    before = GuardCheck.objects.filter(host=host).values_list("problem", flat=True).first()
    if problem and problem != before:
        log.warning(problem)
        record_event(Event.Kind.FAILURE, problem, actor=ACTOR)
    changes: dict[str, object] = {"checked_at": now, "problem": problem}
    if put_back:
        changes["put_back_at"] = now
    GuardCheck.objects.update_or_create(host=host, defaults=changes)
    if settings.TMPNB_BACKEND == "swarm":
        try:
            swarm.mark_guarded(host, not problem)
        except BackendError as error:
            log.warning("node %s not labelled: %s", host, error)


def guard_warnings(*, now: datetime | None = None) -> list[str]:
    """What the dashboard says about the guard: machines whose notebooks are not
    guarded, and those where it was found gone lately."""
    now = now or timezone.now()
    warnings = []
    for check in GuardCheck.objects.order_by("host"):
        if check.problem:
            warnings.append(f"{check.host}: {check.problem} (last checked {timezone.localtime(check.checked_at):%H:%M:%S}).")
        elif check.put_back_at and check.put_back_at > now - PUT_BACK_SHOWN:
            when = timezone.localtime(check.put_back_at)
            warnings.append(
                f"{check.host}: the network guard was gone at {when:%a %H:%M:%S} (a firewall reload or a reboot?) and was put back; "
                "notebooks could reach the host and private addresses until then."
            )
    return warnings


def unguard_network() -> None:
    """Remove the rules; a failure is logged, the service stops anyway."""
    if not guard_applies():
        return
    machines = _machines()
    for host, on in machines.items():
        try:
            netguard.remove(on=on)
        except netguard.GuardError as error:
            log.warning("network guard not removed from %s: %s", host, error)
    GuardCheck.objects.filter(host__in=machines).delete()
