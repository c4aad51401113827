"""Reading settings from environment variables.

Each helper names the variable in its error, so a bad value stops start-up with
a message the operator can act on. ``NAME_FILE`` may hold a secret instead of
``NAME`` (for Docker or systemd secrets).
"""

import ipaddress
import os
import re
from collections.abc import Callable, Iterable
from typing import TypeVar, overload

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SIZE = re.compile(r"^\d+[bkmg]?$", re.IGNORECASE)
Number = TypeVar("Number", int, float)


def _raw(name: str) -> str | None:
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            with open(file_name, encoding="utf-8") as secret:
                return secret.read().strip()
        except OSError as error:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name}: {error.strerror}") from None
    return os.environ.get(name)


def is_set(name: str) -> bool:
    return _raw(name) not in (None, "")


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...
def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value in (None, "") else value


def _number(name: str, default: Number | None, convert: Callable[[str], Number], kind: str, minimum: float | None, maximum: float | None) -> Number | None:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = convert(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {kind}, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}")
    return number


@overload
def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int: ...
@overload
def env_int(name: str, default: None = None, minimum: int | None = None, maximum: int | None = None) -> int | None: ...
def env_int(name: str, default: int | None = None, minimum: int | None = None, maximum: int | None = None) -> int | None:
    return _number(name, default, int, "a whole number", minimum, maximum)


def env_int_or_none(name: str, default: int | None = None, minimum: int | None = None, maximum: int | None = None) -> int | None:
    """A whole number, or None when the variable says ``none``: for a limit
    whose default is a number and which may be turned off."""
    if (_raw(name) or "").strip().lower() == "none":
        return None
    return _number(name, default, int, "a whole number or none", minimum, maximum)


@overload
def env_float(name: str, default: float, minimum: float | None = None, maximum: float | None = None) -> float: ...
@overload
def env_float(name: str, default: None = None, minimum: float | None = None, maximum: float | None = None) -> float | None: ...
def env_float(name: str, default: float | None = None, minimum: float | None = None, maximum: float | None = None) -> float | None:
    return _number(name, default, float, "a number", minimum, maximum)


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_list(name: str, default: Iterable[str] = ()) -> list[str]:
    value = _raw(name)
    if value is None or value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_map(name: str) -> dict[str, str]:
    """``key=value`` pairs, comma-separated (``node-1=unix:///a,node-2=tcp://b``)."""
    pairs = {}
    for item in env_list(name):
        key, equals, value = item.partition("=")
        if not (equals and key.strip() and value.strip()):
            raise ImproperlyConfigured(f"{name} must list name=value pairs separated by commas, and {item!r} is not one")
        pairs[key.strip()] = value.strip()
    return pairs


def env_ip(name: str, default: str) -> str:
    value = env_str(name, default)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an IP address, not {value!r}") from None


def _each(name: str, default: Iterable[str], parse: Callable[[str], object], what: str) -> list[str]:
    """The items of a comma-separated list, each through ``parse``; ``what``
    names what they must be in the error."""
    parsed = []
    for item in env_list(name, default):
        try:
            parsed.append(str(parse(item)))
        except ValueError:
            raise ImproperlyConfigured(f"{name} must list {what}, and {item!r} is not one") from None
    return parsed


def env_ip_list(name: str, default: Iterable[str]) -> list[str]:
    return _each(name, default, ipaddress.ip_address, "IP addresses")


def env_ipv4_networks(name: str, default: Iterable[str]) -> list[str]:
    """IPv4 networks or addresses (``10.0.0.0/8``, ``192.0.2.7``), as iptables
    reads them: a bare address is its /32, host bits are refused."""
    return _each(name, default, ipaddress.IPv4Network, "IPv4 networks such as 10.0.0.0/8")


@overload
def env_size(name: str, default: str) -> str: ...
@overload
def env_size(name: str, default: None = None) -> str | None: ...
def env_size(name: str, default: str | None = None) -> str | None:
    """A Docker memory size such as 512m or 2g."""
    value = env_str(name, default)
    if value is not None and not _SIZE.match(value):
        raise ImproperlyConfigured(f"{name} must be a size such as 512m or 2g, not {value!r}")
    return value


_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def env_bytes_or_none(name: str, default: str, minimum: str) -> int | None:
    """A size such as 512m or 2g (default and minimum written so too) as
    bytes, or None when the variable says ``none``."""
    value = env_str(name, default)
    if value.strip().lower() == "none":
        return None
    if not _SIZE.match(value):
        raise ImproperlyConfigured(f"{name} must be a size such as 512m or 2g, or none, not {value!r}")
    if _in_bytes(value) < _in_bytes(minimum):
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return _in_bytes(value)


def _in_bytes(size: str) -> int:
    unit = size[-1].lower()
    return int(size[:-1]) * _UNITS[unit] if unit in _UNITS else int(size)


def env_url(name: str, default: str, schemes: Iterable[str]) -> str:
    value = env_str(name, default)
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise ImproperlyConfigured(f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}, not {value!r}")
    return value
