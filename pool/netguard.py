"""The notebook network's guard: the only code that calls iptables.

Notebooks on the installation's own bridge networks (``tmpnb-<installation>``
and its internal twin) reach the internet as configured, but not:

- the policy's denied ranges: by default every private, shared (carrier-grade
  NAT), link-local, multicast and reserved range, where clouds keep instance
  metadata and credentials and a site keeps its databases, plus the metadata
  addresses that sit outside those ranges (Azure's 168.63.129.16). Forwarded
  traffic, rejected in a chain jumped to from Docker's DOCKER-USER; the
  resolvers Docker's DNS forwards to stay reachable on port 53 only, and the
  policy's allowed destinations stay reachable whole;
- each other: traffic between the installation's bridges is rejected unless the
  policy lets peers talk (it is forwarded traffic too, because Docker turns on
  bridge-nf-call-iptables);
- anything at all from the internal network (``tnb<tag>i``): no new connection
  leaves it, not to its resolvers nor to the allowed destinations (peers on it
  may talk when the policy lets them). On one machine Docker's internal network
  already cuts it off; on a Swarm, where it is an ordinary bridge whose port is
  published for the proxy, this rule is what does. Docker's DNS forwards a
  query for an outside name from the container's own namespace, through this
  chain, so no name outside resolves either;
- the host itself (Redis, the proxy's API, the Django app, dockerd or anything
  else listening on the host's addresses): input traffic, rejected unless it
  answers a connection the host opened (the proxy connects to the notebook,
  never the reverse). Docker's DNS for these networks answers at 127.0.0.11
  inside the container's own namespace, so it never reaches this chain.

A connection someone else opened to a notebook (the proxy, from another
machine) is answered: the chains let established traffic through first.

The two chains are written with one iptables-restore, so a reinstall never
leaves a moment with a chain empty. Rules match the bridges by a name made from
the installation label, so they touch no other installation's notebooks, and
every rule carries the comment ``tmpnb:<installation>``. The networks are IPv4
only (Docker turns IPv6 off in their containers), so there is nothing for
ip6tables to do.
"""

import hashlib
import logging
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings

log = logging.getLogger(__name__)

TIMEOUT = 10  # seconds; iptables waits for the xtables lock (-w) within it
REJECT = ("-j", "REJECT", "--reject-with", "icmp-admin-prohibited")
# What notebooks may not reach unless allowed (TMPNB_GUARD_DENY's default).
DENIED_BY_DEFAULT = (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # shared (carrier-grade NAT); Alibaba's metadata at 100.100.100.200
    "169.254.0.0/16",  # link-local: AWS, GCP, Azure, OpenStack... metadata at 169.254.169.254
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments (Oracle's old metadata at 192.0.0.192)
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and broadcast
    "168.63.129.16/32",  # Azure's wire server: a public address that answers only inside Azure
)


@dataclass(frozen=True)
class Policy:
    """What the notebooks' networks may not reach, and the exceptions."""

    deny: tuple[str, ...] = DENIED_BY_DEFAULT
    allow: tuple[str, ...] = ()  # destinations reachable whole despite ``deny``
    resolvers: tuple[str, ...] = ()  # reachable on port 53 only: Docker's DNS forwards to them
    peers: bool = False  # notebooks may connect to each other


class GuardError(Exception):
    """iptables is missing, not permitted, or refused a rule."""


def _tag(installation: str | None = None) -> str:
    return hashlib.sha256((installation or settings.TMPNB_INSTALLATION).encode()).hexdigest()[:8]


def bridge_name(internal: bool = False, installation: str | None = None) -> str:
    """The Linux bridge of the installation's network (at most 15 characters)."""
    return f"tnb{_tag(installation)}{'i' if internal else ''}"


def _names(installation: str | None = None) -> tuple[str, str, str, str]:
    tag = _tag(installation)
    # tnb<tag>+ matches both bridges: the routed one and the internal one.
    return f"TMPNB-{tag}", f"TMPNB-{tag}-IN", f"tnb{tag}+", f"tmpnb:{installation or settings.TMPNB_INSTALLATION}"


@dataclass(frozen=True)
class Ran:
    """What a command said: its exit status and its output."""

    returncode: int
    stdout: str
    stderr: str


# Runs a command (with what to write to its standard input) on the machine
# whose notebooks are guarded, and raises GuardError when it cannot.
Runner = Callable[[Sequence[str], str | None], Ran]


def run_here(command: Sequence[str], stdin: str | None) -> Ran:
    """The Runner of this machine."""
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        raise GuardError(f"{command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise GuardError(f"{' '.join(command)} did not answer within {TIMEOUT} s") from None
    return Ran(result.returncode, result.stdout, result.stderr)


def _run(on: Runner, command: Sequence[str], stdin: str | None = None, check: bool = True) -> Ran:
    result = on(command, stdin)
    if check and result.returncode != 0:
        raise GuardError(f"{' '.join(command)}: {result.stderr.strip() or f'exit status {result.returncode}'}")
    return result


def _iptables(on: Runner, *args: str, check: bool = True) -> bool:
    return _run(on, ["iptables", "-w", "5", *args], check=check).returncode == 0


def _ensure_jump(on: Runner, parent: str, rule: tuple[str, ...]) -> None:
    if not _iptables(on, "-C", parent, *rule, check=False):
        _iptables(on, "-I", parent, "1", *rule)


def _chain_rules(policy: Policy, installation: str | None = None) -> list[tuple[str, ...]]:
    """The two chains' rules, as iptables-restore reads them."""
    forward, inbound, bridges, comment = _names(installation)
    internal = bridge_name(internal=True, installation=installation)
    tagged = ("-m", "comment", "--comment", f'"{comment}"')
    answers = ("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tagged, "-j", "RETURN")
    rules: list[tuple[str, ...]] = [(forward, *answers)]
    if policy.peers:
        rules.append((forward, "-i", internal, "-o", internal, *tagged, "-j", "RETURN"))
    # The internal network opens no connection anywhere, its resolvers and the
    # allowed destinations included: on a Swarm it is an ordinary bridge (its
    # port published for the proxy), and only this rule cuts it off.
    rules += [(forward, "-i", internal, *tagged, *REJECT), (forward, "-o", bridges, *tagged, *(("-j", "RETURN") if policy.peers else REJECT))]
    for resolver in policy.resolvers:
        rules += [(forward, "-d", resolver, "-p", protocol, "-m", protocol, "--dport", "53", *tagged, "-j", "RETURN") for protocol in ("udp", "tcp")]
    rules += [(forward, "-d", destination, *tagged, "-j", "RETURN") for destination in policy.allow]
    rules += [(forward, "-d", destination, *tagged, *REJECT) for destination in policy.deny]
    rules += [
        (inbound, *answers),
        (inbound, "-p", "tcp", *tagged, "-j", "REJECT", "--reject-with", "tcp-reset"),
        (inbound, *tagged, "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"),
    ]
    return rules


def _jumps(installation: str | None = None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    forward, inbound, bridges, comment = _names(installation)
    tagged = ("-m", "comment", "--comment", comment)
    return (("DOCKER-USER", ("-i", bridges, *tagged, "-j", forward)), ("INPUT", ("-i", bridges, *tagged, "-j", inbound)))


def install(policy: Policy, installation: str | None = None, *, on: Runner = run_here) -> None:
    """Put the guard in place (again): the policy's rules whatever was there."""
    forward, inbound, _, _ = _names(installation)
    # Docker makes DOCKER-USER when it starts with its iptables rules on.
    if not _iptables(on, "-n", "-L", "DOCKER-USER", check=False):
        raise GuardError("Docker's DOCKER-USER chain is missing (dockerd runs with --iptables=false?)")
    # --noflush keeps every other chain; declaring ours empties them, and the
    # whole table is swapped in one commit.
    table = ["*filter", f":{forward} - [0:0]", f":{inbound} - [0:0]", *(f"-A {' '.join(rule)}" for rule in _chain_rules(policy, installation)), "COMMIT", ""]
    _run(on, ["iptables-restore", "-w", "5", "--noflush"], "\n".join(table))
    for parent, rule in _jumps(installation):
        _ensure_jump(on, parent, rule)


def missing(policy: Policy, installation: str | None = None, *, on: Runner = run_here) -> list[str]:
    """What of the policy's guard is not in place, in words; empty when it all is.
    Rules are counted, not compared word for word: iptables prints them back
    in its own spelling."""
    forward, inbound, _, comment = _names(installation)
    present = rules(installation, on=on)
    gaps = []
    for parent, rule in _jumps(installation):
        if not any(line.startswith(f"-A {parent} ") and line.endswith(f"-j {rule[-1]}") for line in present):
            gaps.append(f"the jump from {parent}")
    expected = _chain_rules(policy, installation)
    for chain in (forward, inbound):
        want = sum(1 for rule in expected if rule[0] == chain)
        have = sum(1 for line in present if line.startswith(f"-A {chain} "))
        if have != want:
            gaps.append(f"{chain} has {have} of its {want} rules")
    return gaps


def remove(installation: str | None = None, *, on: Runner = run_here) -> None:
    """Take the guard away; what is already gone is done."""
    for parent, rule in _jumps(installation):
        while _iptables(on, "-D", parent, *rule, check=False):
            pass
        chain = rule[-1]
        if _iptables(on, "-n", "-L", chain, check=False):
            _iptables(on, "-F", chain)
            _iptables(on, "-X", chain)


def rules(installation: str | None = None, *, on: Runner = run_here) -> list[str]:
    """Every rule of the installation, as ``iptables -S`` prints them."""
    comment = _names(installation)[3]
    listing = _run(on, ["iptables", "-w", "5", "-S"])
    return [line for line in listing.stdout.splitlines() if f'--comment "{comment}"' in line]
