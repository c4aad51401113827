"""tmpnb's HTTP API: spawn, stats and drain. CORS is added by django-cors-headers."""

import hmac
import secrets

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

import tmpnb_site
from pool import services
from pool.views import client_address, too_busy_json


def _token_refusal(request, expected, variable):
    """A JSON refusal, or None when the request carries the expected token."""
    if not expected:
        return JsonResponse({"error": f"this endpoint is disabled: set {variable} to enable it"}, status=403)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in ("token", "bearer") or not hmac.compare_digest(given.encode(), expected.encode()):
        return JsonResponse({"error": "a valid token is required: Authorization: token <token>"}, status=403)
    return None


@csrf_exempt
@require_POST
def spawn(request):
    refusal = _token_refusal(request, settings.TMPNB_API_TOKEN, "TMPNB_API_TOKEN")
    if refusal:
        return refusal
    pool = services.get_default_pool()
    visitor = f"api-{secrets.token_hex(12)}"
    session = services.assign_container(pool=pool, visitor=visitor, client_ip=client_address(request))
    if session is None:
        services.record_turned_away(pool=pool, visitor=visitor)
        return too_busy_json()
    container = session.container
    return JsonResponse({"id": container.path_id, "url": container.url_for(pool.redirect_uri), "token": container.token}, status=201)


@require_GET
def stats(request):
    pool = services.get_default_pool()
    return JsonResponse({**services.pool_stats(pool), "version": tmpnb_site.__version__})


@csrf_exempt
@require_http_methods(["DELETE"])
def drain(request):
    refusal = _token_refusal(request, settings.TMPNB_ADMIN_TOKEN, "TMPNB_ADMIN_TOKEN")
    if refusal:
        return refusal
    drained = services.drain_pool(services.get_default_pool(), by="api")
    return JsonResponse({"drained": drained}, status=202)
