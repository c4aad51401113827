"""Parsing the list-valued container options (host_directories, extra_hosts).

Free of Django imports, so that settings refuse a bad value at start-up with
the same rules the admin applies.
"""

import ipaddress
import re

# CPU microseconds a notebook may use per 100 ms period: one core. Four busy
# loops in one container took 1.71 of this machine's 2 cores without it, and
# at most one with it (issue 33, docs in the README's options table).
DEFAULT_CPU_QUOTA = 100_000

# Folders that hold the Docker socket or the whole host.
_NEVER_MOUNTED = {"", "/run", "/var/run", "/var/lib/docker", "/etc", "/proc", "/sys", "/dev", "/root", "/boot"}
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def _entries(text):
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def parse_host_directories(text):
    """``/host:/container[:ro|rw], ...`` → Docker bind strings. Read-only unless ``:rw``.

    A list, not the SDK's dict keyed by host path, so one host folder can be
    mounted in two places."""
    volumes = []
    for entry in _entries(text):
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not all(p.startswith("/") for p in parts[:2]):
            raise ValueError(f"{entry!r} is not /host/path:/container/path[:ro|rw]")
        if "docker.sock" in parts[0] or parts[0].rstrip("/") in _NEVER_MOUNTED:
            raise ValueError(f"{entry!r}: notebooks must never see {parts[0]} (it gives control of the host)")
        mode = parts[2] if len(parts) == 3 else "ro"
        if mode not in ("ro", "rw"):
            raise ValueError(f"{entry!r}: the mode must be ro or rw, not {mode!r}")
        volumes.append(f"{parts[0]}:{parts[1]}:{mode}")
    return volumes


def parse_extra_hosts(text):
    """``name:address, ...`` → the Docker SDK's extra_hosts mapping."""
    hosts = {}
    for entry in _entries(text):
        name, sep, address = entry.partition(":")
        if not sep or not _HOSTNAME.match(name):
            raise ValueError(f"{entry!r} is not name:address")
        try:
            hosts[name] = str(ipaddress.ip_address(address))
        except ValueError:
            raise ValueError(f"{entry!r}: {address!r} is not an IP address") from None
    return hosts
