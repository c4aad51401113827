"""What the edges need to know about a request: who sent it, what it accepts,
and whether it comes too fast."""

import ipaddress
import logging

from django.conf import settings
from django_ratelimit.core import is_ratelimited

log = logging.getLogger(__name__)


def client_address(request):
    """The visitor's address: the last X-Forwarded-For entry (the one the proxy
    added) when the peer is a trusted proxy, else the peer's own address."""
    peer = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    try:
        if forwarded and str(ipaddress.ip_address(peer)) in settings.TMPNB_TRUSTED_PROXIES:
            return str(ipaddress.ip_address(forwarded.split(",")[-1].strip()))
        return str(ipaddress.ip_address(peer))
    except ValueError:
        return None


def _address_key(group, request):
    return client_address(request) or "unknown"


def spawn_rate_exceeded(request):
    """Counts this request against its address's TMPNB_SPAWN_RATE (shared by
    every web process through Redis). Without Redis, nobody is limited."""
    try:
        return is_ratelimited(
            request, group="spawn", key=_address_key, rate=settings.TMPNB_SPAWN_RATE, method=is_ratelimited.ALL, increment=True
        )
    except Exception as error:  # the cache is down: serving beats refusing
        log.warning("spawn rate limit not checked: %s", error)
        return False


def wants_json(request):
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"
