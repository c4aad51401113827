"""Parsing the list-valued container options (host_directories, extra_hosts).

Free of Django imports, so that settings refuse a bad value at start-up with
the same rules the admin applies.
"""

import ipaddress
import os
import re
from collections.abc import Iterable

# CPU microseconds a notebook may use per 100 ms period: one core. Four busy
# loops in one container took 1.71 of this machine's 2 cores without it, and
# at most one with it (issue 33, docs in the README's options table).
DEFAULT_CPU_QUOTA = 100_000

# Folders that hold the Docker socket, other containers, the host's secrets or
# the host itself: never given to a notebook, nor anything in them or above them.
NEVER_MOUNTED = ("/run", "/var/run", "/var/lib/docker", "/var/lib/containerd", "/etc", "/proc", "/sys", "/dev", "/root", "/boot")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def _entries(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def check_host_path(path: str, protected: Iterable[str] = ()) -> str:
    """The real path of the host's ``path``: links, ``.``, ``..`` and doubled
    slashes resolved, as the kernel will follow them. ValueError if it is, lies
    in or holds a folder of NEVER_MOUNTED or one of ``protected`` (the
    service's own files), or a Docker socket."""
    try:
        real = os.path.realpath(path)
    except OSError as error:
        raise ValueError(f"notebooks must never see {path}: its real path cannot be read ({error.strerror})") from None
    for folder in (*NEVER_MOUNTED, *protected):
        for forbidden in {folder, os.path.realpath(folder)}:
            if real == forbidden or real.startswith(forbidden.rstrip("/") + "/") or forbidden.startswith(real.rstrip("/") + "/"):
                shown = path if real == path else f"{path} (that is {real})"
                raise ValueError(f"notebooks must never see {shown}: it is, holds or lies in {forbidden}, which gives control of the host or the service")
    if "docker.sock" in real:
        raise ValueError(f"notebooks must never see {path}: a Docker socket gives control of the host")
    return real


def parse_host_directories(text: str | None, protected: Iterable[str] = ()) -> list[str]:
    """``/host:/container[:ro|rw], ...`` → Docker bind strings of the host
    folders' real paths (check_host_path). Read-only unless ``:rw``.

    A list, not the SDK's dict keyed by host path, so one host folder can be
    mounted in two places."""
    volumes = []
    for entry in _entries(text):
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not all(p.startswith("/") for p in parts[:2]):
            raise ValueError(f"{entry!r} is not /host/path:/container/path[:ro|rw]")
        host = check_host_path(parts[0], protected)
        mode = parts[2] if len(parts) == 3 else "ro"
        if mode not in ("ro", "rw"):
            raise ValueError(f"{entry!r}: the mode must be ro or rw, not {mode!r}")
        volumes.append(f"{host}:{parts[1]}:{mode}")
    return volumes


def parse_extra_hosts(text: str | None) -> dict[str, str]:
    """``name:address, ...`` → the Docker SDK's extra_hosts mapping."""
    hosts: dict[str, str] = {}
    for entry in _entries(text):
        name, sep, address = entry.partition(":")
        if not sep or not _HOSTNAME.match(name):
            raise ValueError(f"{entry!r} is not name:address")
        try:
            hosts[name] = str(ipaddress.ip_address(address))
        except ValueError:
            raise ValueError(f"{entry!r}: {address!r} is not an IP address") from None
    return hosts
