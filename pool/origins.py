"""Which origin serves what (README "Safety").

A participant controls everything in their container: its pages run with the
rights of their origin. So each notebook is served on an origin that no page
of the service has: <id>.TMPNB_NOTEBOOK_DOMAIN, or, without a domain, the
proxy's notebook port (deploy/proxy/tmpnb-proxy.mjs, which routes by the same
keys as ``route_path``). A notebook's origin reaches the app only for what the
proxy has no route for: an ended or reconnecting notebook, the cull warning's
question and the hand, name and live-help answers its banner sends, and the static files; the
proxy itself serves JupyterLab's files there (deploy/proxy/lab-static.mjs).
The admin lives on TMPNB_ADMIN_HOST when set.
"""

import re
from collections.abc import Callable
from typing import cast

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, HttpResponseNotFound
from django.http.request import split_domain_port

SERVICE, ADMIN, NOTEBOOK = "service", "admin", "notebook"
# The proxy's routing key for its notebook port: "@" is in no host name.
NOTEBOOK_LISTENER = "@notebooks"
# What a notebook's origin may ask of the app (a path under /user/<id>/ is the
# notebook's own when the proxy has its route), and what only it may: the
# static files came out of a notebook's image.
NOTEBOOK_ORIGIN_PATHS = re.compile(r"^/(user/|api/notebooks/[^/]+/(time-left|hand|name|live)$|static/)")
NOTEBOOK_ORIGIN_ONLY = "/static/"
ADMIN_PATHS = re.compile(r"^/(admin/|tmpnb-static/)")
USER_PATH = re.compile(r"^/user/([A-Za-z0-9]+)/")


class OriginRequest(HttpRequest):
    """A request OriginMiddleware has seen: it knows which origin it came to."""

    origin_kind: str


def route_path(path_id: str) -> str:
    """The proxy's route of notebook ``path_id``: its host (or the notebook
    port's key), then its /user/<id> prefix, which the server answers under."""
    host = f"{path_id}.{settings.TMPNB_NOTEBOOK_DOMAIN}" if settings.TMPNB_NOTEBOOK_DOMAIN else NOTEBOOK_LISTENER
    return f"/{host}/user/{path_id}"


def kind_of(request: HttpRequest) -> str:
    host, port = split_domain_port(request.META.get("HTTP_HOST", ""))
    if settings.TMPNB_NOTEBOOK_DOMAIN:
        if host.endswith("." + settings.TMPNB_NOTEBOOK_DOMAIN):
            return NOTEBOOK
    elif port == str(settings.TMPNB_NOTEBOOK_PORT):
        return NOTEBOOK
    if settings.TMPNB_ADMIN_HOST and host == settings.TMPNB_ADMIN_HOST:
        return ADMIN
    return SERVICE


def serves(kind: str, path: str) -> bool:
    if kind == NOTEBOOK:
        return bool(NOTEBOOK_ORIGIN_PATHS.match(path))
    if path.startswith(NOTEBOOK_ORIGIN_ONLY):
        return False
    if kind == ADMIN:
        return bool(ADMIN_PATHS.match(path))
    return not (settings.TMPNB_ADMIN_HOST and path.startswith("/admin/"))


def _port_suffix(request: HttpRequest, port: str | int) -> str:
    default = "443" if request.scheme == "https" else "80"
    return "" if str(port) in ("", default) else f":{port}"


def notebook_url(request: HttpRequest, path: str) -> str:
    """``path`` (a container's ``url_for``) on its notebook's origin, as the
    browser that sent ``request`` reaches this service."""
    host, port = split_domain_port(request.get_host())
    path_id = cast(re.Match[str], USER_PATH.match(path)).group(1)  # a url_for: always under /user/<id>/
    if settings.TMPNB_NOTEBOOK_DOMAIN:
        return f"{request.scheme}://{path_id}.{settings.TMPNB_NOTEBOOK_DOMAIN}{_port_suffix(request, port)}{path}"
    return f"{request.scheme}://{host}{_port_suffix(request, settings.TMPNB_NOTEBOOK_PORT)}{path}"


def service_url(request: HttpRequest, path: str) -> str:
    """``path`` on the participants' pages, from a notebook's origin."""
    host, port = split_domain_port(request.get_host())
    if settings.TMPNB_NOTEBOOK_DOMAIN:
        host = settings.TMPNB_PUBLIC_HOST or settings.TMPNB_NOTEBOOK_DOMAIN
        return f"{request.scheme}://{host}{_port_suffix(request, port)}{path}"
    return f"{request.scheme}://{host}{_port_suffix(request, settings.TMPNB_PUBLIC_PORT)}{path}"


class OriginMiddleware:
    """Each origin serves only its own pages, and no page of the service may
    be framed: a notebook's origin gets a 404 for everything else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        cast(OriginRequest, request).origin_kind = kind = kind_of(request)
        response: HttpResponseBase
        if not serves(kind, request.path_info):
            response = HttpResponseNotFound("Not found", content_type="text/plain")
        else:
            response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        return response
