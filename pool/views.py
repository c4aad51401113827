import ipaddress
import secrets

from django.http import JsonResponse
from django.shortcuts import redirect, render

from pool import services

VISITOR_COOKIE = "tmpnb_visitor"
VISITOR_COOKIE_AGE = 7 * 24 * 3600
RETRY_AFTER = 5  # seconds; the "nothing ready" page reloads itself after this


def spawn(request, path=""):
    """The landing page: a visitor lands in their own notebook, the same one
    on every reload, or learns that none is ready yet."""
    pool = services.get_default_pool()
    visitor = request.get_signed_cookie(VISITOR_COOKIE, default=None, salt=VISITOR_COOKIE) or secrets.token_hex(16)
    session = services.assign_container(pool=pool, visitor=visitor, client_ip=client_address(request))
    if session is None:
        response = nothing_ready(request)
    else:
        response = redirect(session.container.url_for(path or pool.redirect_uri))
    response.set_signed_cookie(
        VISITOR_COOKIE, visitor, salt=VISITOR_COOKIE, max_age=VISITOR_COOKIE_AGE, httponly=True, samesite="Lax"
    )
    return response


def nothing_ready(request):
    if wants_json(request):
        response = JsonResponse(
            {"status": "full", "message": "No notebook server is ready yet; try again shortly.", "retry_after": RETRY_AFTER},
            status=429,
        )
    else:
        response = render(request, "pool/nothing_ready.html", {"retry_after": RETRY_AFTER}, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    response["Cache-Control"] = "no-store"
    return response


def wants_json(request):
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"


def client_address(request):
    """The visitor's address: the proxy's X-Forwarded-For entry when the
    request came through the proxy on loopback, else the peer's address."""
    peer = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    try:
        if forwarded and ipaddress.ip_address(peer).is_loopback:
            return str(ipaddress.ip_address(forwarded.split(",")[-1].strip()))
        return str(ipaddress.ip_address(peer))
    except ValueError:
        return None
