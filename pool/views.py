import ipaddress
import secrets

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.static import serve

from pool import services
from pool.models import Container, Pool

VISITOR_COOKIE = "tmpnb_visitor"
VISITOR_COOKIE_AGE = 7 * 24 * 3600
RETRY_AFTER = 5  # seconds; the "nothing ready" page reloads itself after this


def spawn(request, path="", pool_name=None):
    """The landing page of a pool (/ for the default pool, /p/<name>/ for
    any): a visitor lands in their own notebook, the same one on every
    reload, or learns that none is ready yet."""
    pool = services.get_default_pool() if pool_name is None else get_object_or_404(Pool, name=pool_name)
    visitor = request.get_signed_cookie(VISITOR_COOKIE, default=None, salt=VISITOR_COOKIE) or secrets.token_hex(16)
    session = services.assign_container(pool=pool, visitor=visitor, client_ip=client_address(request))
    if session is None:
        services.record_turned_away(pool=pool, visitor=visitor)
        response = nothing_ready(request)
    elif session.container.pool_id != pool.pk:
        # One visitor holds one notebook at a time, whatever the pool.
        response = held_elsewhere(request, session)
    else:
        response = redirect(session.container.url_for(path or pool.redirect_uri))
    response.set_signed_cookie(
        VISITOR_COOKIE, visitor, salt=VISITOR_COOKIE, max_age=VISITOR_COOKIE_AGE, httponly=True, samesite="Lax"
    )
    return response


def nothing_ready(request):
    if wants_json(request):
        return too_busy_json()
    response = render(request, "pool/nothing_ready.html", {"retry_after": RETRY_AFTER}, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    response["Cache-Control"] = "no-store"
    return response


def held_elsewhere(request, session):
    """The visitor already holds a notebook of another pool: say so, and lead
    them back to it rather than silently somewhere they did not ask for."""
    held = session.container.pool
    context = {"status": "held-elsewhere", "pool": held.name, "url": session.container.url_for(held.redirect_uri)}
    return _page_or_json(request, "pool/held_elsewhere.html", context, 409)


def too_busy_json():
    response = JsonResponse(
        {"status": "full", "message": "No notebook server is ready yet; try again shortly.", "retry_after": RETRY_AFTER},
        status=429,
    )
    response["Retry-After"] = str(RETRY_AFTER)
    return response


def user_fallback(request, path_id, rest=""):
    """/user/<id>/... reaches the app only when the proxy has no route for it:
    the route is being restored, or the server has ended."""
    container = Container.objects.select_related("pool").filter(path_id=path_id).first()
    if container is not None and container.state in (Container.State.READY, Container.State.ASSIGNED):
        return _page_or_json(request, "pool/reconnecting.html", {"status": "reconnecting", "retry_after": 2}, 503)
    if container is None:
        return _page_or_json(request, "pool/ended.html", {"status": "ended"}, 404)
    # A new notebook from the pool the ended one came from.
    return _page_or_json(request, "pool/ended.html", {"status": "ended", "landing": container.pool.landing_path}, 410)


def _page_or_json(request, template, context, status):
    if wants_json(request):
        response = JsonResponse(context, status=status)
    else:
        response = render(request, template, context, status=status)
    if "retry_after" in context:
        response["Retry-After"] = str(context["retry_after"])
    response["Cache-Control"] = "no-store"
    return response


def static_files(request, path):
    """tmpnb's static_files, copied out of the first ready container."""
    if not settings.TMPNB_STATIC_FILES:
        raise Http404("no static files are configured")
    try:
        return serve(request, path, document_root=services.static_files_root())
    except SuspiciousFileOperation:  # a path that climbs out of the folder
        raise Http404("no such file") from None


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
