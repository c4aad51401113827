"""What the edges need to know about a request: who sent it, what it accepts,
and whether it comes too fast."""

import functools
import ipaddress
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render

if TYPE_CHECKING:
    from tmpnb_site.cache import RedisCache

log = logging.getLogger(__name__)
Response = TypeVar("Response", bound=HttpResponseBase)


def client_address(request: HttpRequest) -> str | None:
    """The visitor's address: the last X-Forwarded-For entry (the one the proxy
    added) when the peer is a trusted proxy, else the peer's own address."""
    peer = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    try:
        if forwarded and _canonical(peer) in settings.TMPNB_TRUSTED_PROXIES:
            return _canonical(forwarded.split(",")[-1].strip())
        return _canonical(peer)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def _canonical(address: str) -> str:
    """An address as ipaddress writes it. Kept: parsing took 5-11 us, two
    parses a call, and an admission asks three times (a fifth of its rate
    limits' work); a malformed address raises, and is not kept."""
    return str(ipaddress.ip_address(address))


PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _period(rate: str) -> tuple[int, int]:
    """``rate`` as (requests, seconds): "600/m" is (600, 60), "5/10s" is (5, 10)
    (the settings refuse any other shape)."""
    requests, per = rate.split("/")
    return int(requests), int(per[:-1] or 1) * PERIOD_SECONDS[per[-1]]


def _rate_exceeded(request: HttpRequest, group: str, rate: str) -> bool:
    """Counts this request against its address's ``rate``."""
    return _count_exceeded(group, client_address(request) or "unknown", rate)


def _count_exceeded(group: str, subject: str, rate: str) -> bool:
    """Counts one more try of ``subject`` against ``rate``, in Redis so every
    web process shares the count: one round trip (django-ratelimit's add, then
    check and increment, took three, a tenth of an admission's CPU). Each
    period starts a new count. Without Redis, nobody is limited."""
    limit, seconds = _period(rate)
    key = f"rate:{group}:{subject}:{int(time.time() // seconds)}"
    try:
        return cast("RedisCache", caches["default"]).count_hit(key, seconds) > limit  # settings.CACHES
    except Exception as error:  # the cache is down: serving beats refusing
        log.warning("%s rate limit not checked: %s", group, error)
        return False


def spawn_rate_exceeded(request: HttpRequest) -> bool:
    return _rate_exceeded(request, "spawn", settings.TMPNB_SPAWN_RATE)


def access_code_rate_exceeded(request: HttpRequest) -> bool:
    """Guesses at a pool's access code, per address (TMPNB_ACCESS_CODE_RATE)."""
    return _rate_exceeded(request, "access-code", settings.TMPNB_ACCESS_CODE_RATE)


def resume_rate_exceeded(request: HttpRequest, code_key: str | None) -> bool:
    """Tries at resume codes (TMPNB_RESUME_RATE), per address and per code
    tried (by its keyed hash, ``code_key``: no cache holds a code). Both are
    counted at every try."""
    by_address = _rate_exceeded(request, "resume", settings.TMPNB_RESUME_RATE)
    by_code = code_key is not None and _count_exceeded("resume-code", code_key, settings.TMPNB_RESUME_RATE)
    return by_address or by_code


def hand_rate_exceeded(path_id: str) -> bool:
    """Hands raised or lowered and names typed from inside notebook
    ``path_id`` (TMPNB_HAND_RATE), counted once its token is known good."""
    return _count_exceeded("hand", path_id, settings.TMPNB_HAND_RATE)


def wants_json(request: HttpRequest) -> bool:
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"


def page_or_json(request: HttpRequest, template: str, context: Mapping[str, Any], status: int) -> HttpResponse:
    """The same answer as a page or, for JSON clients, as the context itself."""
    response: HttpResponse
    if wants_json(request):
        response = JsonResponse(context, status=status)
    else:
        response = render(request, template, context, status=status)
    return no_store(response, context.get("retry_after"))


def no_store(response: Response, retry_after: int | None = None) -> Response:
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response
