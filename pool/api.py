"""tmpnb's HTTP API: spawn, stats and drain. CORS is added by django-cors-headers."""

import hmac
import json
import secrets

from django.conf import settings
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

import tmpnb_site
from pool import services
from pool.http import client_address
from pool.views import refusal, too_busy_json


def _token_refusal(request, expected, variable):
    """A JSON refusal, or None when the request carries the expected token."""
    if not expected:
        return JsonResponse({"error": f"this endpoint is disabled: set {variable} to enable it"}, status=403)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in ("token", "bearer") or not hmac.compare_digest(given.encode(), expected.encode()):
        return JsonResponse({"error": "a valid token is required: Authorization: token <token>"}, status=403)
    return None


def _wants_to_wait(request):
    if request.GET.get("wait") in ("1", "true"):
        return True
    try:
        return json.loads(request.body or b"{}").get("wait") is True
    except (ValueError, AttributeError):
        return False


@csrf_exempt
@require_POST
def spawn(request):
    """A notebook for an API client. With ``wait`` (JSON body or query), a
    client that cannot be served at once takes a place in the queue and polls
    its status URL; without it, it is told when to try again (429)."""
    denied = _token_refusal(request, settings.TMPNB_API_TOKEN, "TMPNB_API_TOKEN")
    if denied:
        return denied
    pool = services.get_default_pool()
    ticket = secrets.token_hex(16)
    wait = _wants_to_wait(request)
    try:
        admission = services.admit(pool=pool, visitor=f"api-{ticket}", client_ip=client_address(request), wait=wait)
    except services.AddressLimitReached as error:
        return refusal(request, str(error), 60)
    if admission.session is not None:
        container = admission.session.container
        body = {"id": container.path_id, "url": container.url_for(pool.redirect_uri), "token": container.token}
        return JsonResponse(body, status=201)
    if not wait:
        return too_busy_json(pool)
    status = services.admission_status(f"api-{ticket}")
    return JsonResponse({**status, "status_url": reverse("api-spawn-status", args=[ticket])}, status=202)


@require_GET
def spawn_status(request, ticket):
    """Where a waiting API client stands: ready (with the URL) or its place."""
    denied = _token_refusal(request, settings.TMPNB_API_TOKEN, "TMPNB_API_TOKEN")
    if denied:
        return denied
    return JsonResponse(services.admission_status(f"api-{ticket}"))


@require_GET
def stats(request):
    pool = services.get_default_pool()
    return JsonResponse({**services.pool_stats(pool), "version": tmpnb_site.__version__})


@csrf_exempt
@require_http_methods(["DELETE"])
def drain(request):
    denied = _token_refusal(request, settings.TMPNB_ADMIN_TOKEN, "TMPNB_ADMIN_TOKEN")
    if denied:
        return denied
    drained = services.drain_pool(services.get_default_pool())
    return JsonResponse({"drained": drained}, status=202)
