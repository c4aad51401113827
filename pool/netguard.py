"""The notebook network's guard: the only code that calls iptables.

Notebooks on the installation's own bridge networks (``tmpnb-<installation>``
and its internal twin) reach the internet as configured, but not:

- link-local addresses (169.254.0.0/16), where clouds keep instance metadata
  and credentials: forwarded traffic, dropped in a chain jumped to from Docker's
  DOCKER-USER;
- the host itself (Redis, the proxy's API, the Django app, dockerd or anything
  else listening on the host's addresses): input traffic, rejected unless it
  answers a connection the host opened (the proxy connects to the notebook,
  never the reverse). Docker's DNS for these networks answers at 127.0.0.11
  inside the container's own namespace, so it never reaches this chain.

Rules match the bridges by a name made from the installation label, so they
touch no other installation's notebooks, and every rule carries the comment
``tmpnb:<installation>``. The networks are IPv4 only (Docker turns IPv6 off in
their containers), so there is nothing for ip6tables to do.
"""

import hashlib
import logging
import subprocess

from django.conf import settings

log = logging.getLogger(__name__)

TIMEOUT = 10  # seconds; iptables waits for the xtables lock (-w) within it
LINK_LOCAL = "169.254.0.0/16"


class GuardError(Exception):
    """iptables is missing, not permitted, or refused a rule."""


def _tag(installation=None):
    return hashlib.sha256((installation or settings.TMPNB_INSTALLATION).encode()).hexdigest()[:8]


def bridge_name(internal=False, installation=None):
    """The Linux bridge of the installation's network (at most 15 characters)."""
    return f"tnb{_tag(installation)}{'i' if internal else ''}"


def _names(installation=None):
    tag = _tag(installation)
    # tnb<tag>+ matches both bridges: the routed one and the internal one.
    return f"TMPNB-{tag}", f"TMPNB-{tag}-IN", f"tnb{tag}+", f"tmpnb:{installation or settings.TMPNB_INSTALLATION}"


def _iptables(*args, check=True):
    try:
        result = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        raise GuardError("iptables is not installed") from None
    except subprocess.TimeoutExpired:
        raise GuardError(f"iptables {' '.join(args)} did not answer within {TIMEOUT} s") from None
    if check and result.returncode != 0:
        raise GuardError(f"iptables {' '.join(args)}: {result.stderr.strip() or f'exit status {result.returncode}'}")
    return result.returncode == 0


def _ensure_chain(chain):
    if not _iptables("-n", "-L", chain, check=False):
        _iptables("-N", chain)
    _iptables("-F", chain)


def _ensure_jump(parent, rule):
    if not _iptables("-C", parent, *rule, check=False):
        _iptables("-I", parent, "1", *rule)


def install(installation=None):
    """Put the guard in place (again): the same rules whatever was there."""
    forward, inbound, bridges, comment = _names(installation)
    tagged = ("-m", "comment", "--comment", comment)
    # Docker makes DOCKER-USER when it starts with its iptables rules on.
    if not _iptables("-n", "-L", "DOCKER-USER", check=False):
        raise GuardError("Docker's DOCKER-USER chain is missing (dockerd runs with --iptables=false?)")
    _ensure_chain(forward)
    _iptables("-A", forward, "-d", LINK_LOCAL, *tagged, "-j", "DROP")
    _ensure_chain(inbound)
    _iptables("-A", inbound, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", *tagged, "-j", "RETURN")
    _iptables("-A", inbound, "-p", "tcp", *tagged, "-j", "REJECT", "--reject-with", "tcp-reset")
    _iptables("-A", inbound, *tagged, "-j", "REJECT", "--reject-with", "icmp-admin-prohibited")
    _ensure_jump("DOCKER-USER", ("-i", bridges, *tagged, "-j", forward))
    _ensure_jump("INPUT", ("-i", bridges, *tagged, "-j", inbound))


def remove(installation=None):
    """Take the guard away; what is already gone is done."""
    forward, inbound, bridges, comment = _names(installation)
    tagged = ("-m", "comment", "--comment", comment)
    for parent, chain in (("DOCKER-USER", forward), ("INPUT", inbound)):
        while _iptables("-D", parent, "-i", bridges, *tagged, "-j", chain, check=False):
            pass
        if _iptables("-n", "-L", chain, check=False):
            _iptables("-F", chain)
            _iptables("-X", chain)


def rules(installation=None):
    """Every rule of the installation, as ``iptables -S`` prints them."""
    comment = _names(installation)[3]
    listing = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True, timeout=TIMEOUT)
    return [line for line in listing.stdout.splitlines() if f'--comment "{comment}"' in line]
