"""Reading settings from environment variables.

Each helper names the variable in its error, so a bad value stops start-up with
a message the operator can act on. ``NAME_FILE`` may hold a secret instead of
``NAME`` (for Docker or systemd secrets).
"""

import ipaddress
import os
import re

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SIZE = re.compile(r"^\d+[bkmg]?$", re.IGNORECASE)


def _raw(name):
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            with open(file_name, encoding="utf-8") as secret:
                return secret.read().strip()
        except OSError as error:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name}: {error.strerror}") from None
    return os.environ.get(name)


def is_set(name):
    return _raw(name) not in (None, "")


def env_str(name, default=None):
    value = _raw(name)
    return default if value in (None, "") else value


def _number(name, default, convert, kind, minimum, maximum):
    value = _raw(name)
    if value in (None, ""):
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


def env_int(name, default=None, minimum=None, maximum=None):
    return _number(name, default, int, "a whole number", minimum, maximum)


def env_int_or_none(name, default=None, minimum=None, maximum=None):
    """A whole number, or None when the variable says ``none``: for a limit
    whose default is a number and which may be turned off."""
    if (_raw(name) or "").strip().lower() == "none":
        return None
    return _number(name, default, int, "a whole number or none", minimum, maximum)


def env_float(name, default=None, minimum=None, maximum=None):
    return _number(name, default, float, "a number", minimum, maximum)


def env_bool(name, default=False):
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_list(name, default=()):
    value = _raw(name)
    if value in (None, ""):
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_ip(name, default):
    value = env_str(name, default)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an IP address, not {value!r}") from None


def _each(name, default, parse, what):
    """The items of a comma-separated list, each through ``parse``; ``what``
    names what they must be in the error."""
    parsed = []
    for item in env_list(name, default):
        try:
            parsed.append(str(parse(item)))
        except ValueError:
            raise ImproperlyConfigured(f"{name} must list {what}, and {item!r} is not one") from None
    return parsed


def env_ip_list(name, default):
    return _each(name, default, ipaddress.ip_address, "IP addresses")


def env_ipv4_networks(name, default):
    """IPv4 networks or addresses (``10.0.0.0/8``, ``192.0.2.7``), as iptables
    reads them: a bare address is its /32, host bits are refused."""
    return _each(name, default, ipaddress.IPv4Network, "IPv4 networks such as 10.0.0.0/8")


def env_size(name, default=None):
    """A Docker memory size such as 512m or 2g."""
    value = env_str(name, default)
    if value is not None and not _SIZE.match(value):
        raise ImproperlyConfigured(f"{name} must be a size such as 512m or 2g, not {value!r}")
    return value


_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def env_bytes_or_none(name, default, minimum):
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


def _in_bytes(size):
    unit = size[-1].lower()
    return int(size[:-1]) * _UNITS[unit] if unit in _UNITS else int(size)


def env_url(name, default, schemes):
    value = env_str(name, default)
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise ImproperlyConfigured(f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}, not {value!r}")
    return value
