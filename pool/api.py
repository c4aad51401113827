"""tmpnb's HTTP API: spawn, stats, drain and /metrics. CORS is added by django-cors-headers."""

import hmac
import ipaddress
import json
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

import tmpnb_site
from pool import origins, prometheus
from pool.http import client_address, no_store
from pool.services import assignment, pools, usage, waiting, workshops
from pool.views import ready_on_its_origin, refusal, too_busy_json, workshop_closed_context, workshop_closed_status


def _has_token(request: HttpRequest, expected: str | None) -> bool:
    """Whether the request carries ``expected`` (Authorization: token or Bearer),
    compared in constant time."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(expected and scheme.lower() in ("token", "bearer") and hmac.compare_digest(given.encode(), expected.encode()))


def _token_refusal(request: HttpRequest, expected: str | None, variable: str) -> JsonResponse | None:
    """A JSON refusal, or None when the request carries the expected token."""
    if not expected:
        return JsonResponse({"error": f"this endpoint is disabled: set {variable} to enable it"}, status=403)
    if not _has_token(request, expected):
        return JsonResponse({"error": "a valid token is required: Authorization: token <token>"}, status=403)
    return None


def _wants_to_wait(request: HttpRequest) -> bool:
    if request.GET.get("wait") in ("1", "true"):
        return True
    try:
        return json.loads(request.body or b"{}").get("wait") is True
    except (ValueError, AttributeError):
        return False


@csrf_exempt
@require_POST
def spawn(request: HttpRequest) -> HttpResponseBase:
    """A notebook for an API client. With ``wait`` (JSON body or query), a
    client that cannot be served at once takes a place in the queue and polls
    its status URL; without it, it is told when to try again (429)."""
    denied = _token_refusal(request, settings.TMPNB_API_TOKEN, "TMPNB_API_TOKEN")
    if denied:
        return denied
    pool = pools.get_default_pool()
    workshop = workshops.governing(pool)
    if workshop is not None and (closed := workshops.landing_closed(workshop)) is not None:
        # The landing's answer, always as JSON.
        return no_store(JsonResponse(workshop_closed_context(closed), status=workshop_closed_status(closed)), closed.retry_after)
    ticket = secrets.token_hex(16)
    wait = _wants_to_wait(request)
    try:
        admission = assignment.admit(pool=pool, visitor=f"api-{ticket}", client_ip=client_address(request), wait=wait)
    except assignment.AddressLimitReached as error:
        return refusal(request, str(error), 60)
    if admission.session is not None:
        container = admission.session.container
        body = {"id": container.path_id, "url": origins.notebook_url(request, container.url_for(pool.redirect_uri)), "token": container.token}
        return JsonResponse(body, status=201)
    usage.record_turned_away(pool=pool, visitor=f"api-{ticket}")
    if not wait:
        return too_busy_json(pool)
    status = waiting.admission_status(f"api-{ticket}")
    return JsonResponse({**status, "status_url": reverse("api-spawn-status", args=[ticket])}, status=202)


@require_GET
def spawn_status(request: HttpRequest, ticket: str) -> JsonResponse:
    """Where a waiting API client stands: ready (with the URL) or its place."""
    denied = _token_refusal(request, settings.TMPNB_API_TOKEN, "TMPNB_API_TOKEN")
    if denied:
        return denied
    return JsonResponse(ready_on_its_origin(request, waiting.admission_status(f"api-{ticket}")))


@require_GET
def stats(request: HttpRequest) -> JsonResponse:
    pool = pools.get_default_pool()
    return JsonResponse({**pools.pool_stats(pool), "version": tmpnb_site.__version__})


@csrf_exempt
@require_http_methods(["DELETE"])
def drain(request: HttpRequest) -> JsonResponse:
    denied = _token_refusal(request, settings.TMPNB_ADMIN_TOKEN, "TMPNB_ADMIN_TOKEN")
    if denied:
        return denied
    drained = pools.drain_pool(pools.get_default_pool(), by="api")
    return JsonResponse({"drained": drained}, status=202)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format, for the metrics token or a client on this host.
    Through the proxy the client is the one X-Forwarded-For names, so a
    remote visitor does not pass for loopback (see client_address)."""
    client = client_address(request)
    if not (_has_token(request, settings.TMPNB_METRICS_TOKEN) or (client and ipaddress.ip_address(client).is_loopback)):
        return HttpResponse("Forbidden: send Authorization: Bearer $TMPNB_METRICS_TOKEN\n", status=403, content_type="text/plain")
    return HttpResponse(prometheus.exposition(), content_type=prometheus.CONTENT_TYPE_LATEST)
