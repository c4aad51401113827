"""The admin site, whose home page is the organiser's dashboard."""

import secrets
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_POST

from pool import origins
from pool.http import no_store
from pool.models import Pool, Session
from pool.services import dashboard, ending, live, look, pools, room

REFRESH_SECONDS = 10
ROOM_REFRESH_SECONDS = 5
# The look page shows a participant's notebook: no script at all, images only
# as checked data: URLs, styles only the admin's and its own, framed by nothing
# but able to frame its own beat (look_beat_view).
LOOK_POLICY = (
    "default-src 'none'; img-src data:; style-src 'self' 'nonce-{nonce}'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class TmpnbAdminSite(admin.AdminSite):
    site_header = "tmpnb administration"
    site_title = "tmpnb"
    index_title = "Dashboard"
    index_template = "admin/pool/index.html"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [
            path("dashboard/", self.admin_view(self.dashboard_view), name="dashboard"),
            path("dashboard/kill/", self.admin_view(self.kill_view), name="dashboard-kill"),
            path("room/", self.admin_view(self.room_view), name="room"),
            path("room/<int:pool_id>/", self.admin_view(self.room_view), name="room"),
            path("room/<int:pool_id>/rows", self.admin_view(self.room_rows_view), name="room-rows"),
            path("room/<int:pool_id>/lower/", self.admin_view(self.lower_hand_view), name="room-lower"),
            path("room/<int:pool_id>/live/", self.admin_view(self.live_view), name="room-live"),
            path("room/<int:pool_id>/look/<int:session_id>/", self.admin_view(self.look_view), name="room-look"),
            path("room/<int:pool_id>/look/<int:session_id>/beat", self.admin_view(self.look_beat_view), name="room-look-beat"),
            *super().get_urls(),
        ]

    def _dashboard_context(self, request: HttpRequest) -> dict[str, Any]:
        return {"dashboard": dashboard.dashboard(window=request.GET.get("window", "24h")), "refresh": REFRESH_SECONDS}

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        return super().index(request, extra_context={**self._dashboard_context(request), **(extra_context or {})})

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        """The dashboard alone, which the home page fetches to refresh itself."""
        return TemplateResponse(request, "admin/pool/dashboard.html", self._dashboard_context(request))

    @staticmethod
    @require_POST
    def kill_view(request: HttpRequest) -> HttpResponseRedirect:
        if not request.user.has_perm("pool.change_session"):
            raise PermissionDenied
        chosen = request.POST.getlist("one") or request.POST.getlist("session")
        sessions = Session.objects.active().filter(pk__in=chosen).select_related("container__pool")
        killed = ending.kill_sessions(sessions, by=request.user.get_username(), on_worker=True)
        messages.success(request, f"Killed {killed} session(s).")
        return redirect("admin:index")

    def room_view(self, request: HttpRequest, pool_id: int | None = None) -> TemplateResponse:
        """Everyone holding a notebook of a pool (the default one without an
        id); the page fetches room_rows_view to refresh itself."""
        pool = pools.get_default_pool() if pool_id is None else get_object_or_404(Pool, pk=pool_id)
        context = {**self.each_context(request), "title": f"Room: {pool.name}", "pool": pool, "pools": Pool.objects.all(), "refresh": ROOM_REFRESH_SECONDS}
        return TemplateResponse(request, "admin/pool/room.html", context)

    @staticmethod
    def room_rows_view(request: HttpRequest, pool_id: int) -> JsonResponse:
        rows = room.room(get_object_or_404(Pool, pk=pool_id))
        return no_store(JsonResponse({"participants": room.as_json(rows)}))

    @staticmethod
    @require_POST
    def lower_hand_view(request: HttpRequest, pool_id: int) -> HttpResponseRedirect:
        if not request.user.has_perm("pool.change_session"):
            raise PermissionDenied
        chosen = request.POST.get("session", "")
        session = Session.objects.active().filter(pk=chosen, container__pool_id=pool_id).first() if chosen.isdigit() else None
        if session is not None:
            room.lower_hand(session)
            messages.success(request, f"Lowered the hand of {session.display_name or session.visitor_tag}.")
        return redirect("admin:room", pool_id=pool_id)

    @staticmethod
    @require_POST
    def live_view(request: HttpRequest, pool_id: int) -> HttpResponseRedirect:
        """A helper asks to join a participant live, opens their JupyterLab
        once accepted (a one-time link on the notebook's origin), or ends it
        (pool/services/live.py)."""
        if not request.user.has_perm("pool.change_session"):
            raise PermissionDenied
        chosen = request.POST.get("session", "")
        session = Session.objects.active().select_related("container__pool").filter(pk=chosen, container__pool_id=pool_id).first() if chosen.isdigit() else None
        if session is None:
            messages.error(request, "That participant's notebook has ended.")
            return redirect("admin:room", pool_id=pool_id)
        helper, action = request.user.get_username(), request.POST.get("action")
        try:
            if action == "ask":
                live.ask(session, helper=helper)
                messages.success(request, f"Asked {session.display_name or session.visitor_tag} to let you join live.")
            elif action == "join":
                invitation = live.current(session)
                if invitation is None:
                    raise live.LiveError("Nobody has accepted you.")
                key = live.join(invitation, helper=helper)
                return HttpResponseRedirect(origins.notebook_url(request, live.join_path(invitation, key)))
            elif action == "end":
                live.end(session, by=helper)
                messages.success(request, "Live help ended.")
        except live.LiveError as error:
            messages.error(request, str(error))
        return redirect("admin:room", pool_id=pool_id)

    def look_view(self, request: HttpRequest, pool_id: int, session_id: int) -> TemplateResponse:
        """A participant's notebook or folder (``?path=``), read now through the
        service's own channel and shown read-only (pool/services/look.py)."""
        session = _looked_at(request, pool_id, session_id)
        path = request.GET.get("path", "")
        context: dict[str, Any] = {"error": ""}
        try:
            shown = look.look(session, path, by=request.user.get_username())
            context["folder" if isinstance(shown, look.Folder) else "notebook"] = shown
            path = shown.path
        except look.LookError as error:
            context["error"] = str(error)
        who = f"{session.display_name} ({session.visitor_tag})" if session.display_name else session.visitor_tag
        nonce = secrets.token_urlsafe(16)
        context |= {
            **self.each_context(request),
            "is_nav_sidebar_enabled": False,  # its script would not run here
            "title": f"Looking at {who}",
            "who": who,
            "pool": session.container.pool,
            "session": session,
            "path": path,
            "parent": path.rpartition("/")[0],
            "nonce": nonce,
        }
        response = TemplateResponse(request, "admin/pool/look.html", context)
        response.headers["Content-Security-Policy"] = LOOK_POLICY.format(nonce=nonce)
        return response  # admin_view marks it never to be cached

    @staticmethod
    @xframe_options_sameorigin
    def look_beat_view(request: HttpRequest, pool_id: int, session_id: int) -> TemplateResponse:
        """The look page's frame, reloading itself while the page is open."""
        look.beat(_looked_at(request, pool_id, session_id))
        response = TemplateResponse(request, "admin/pool/look_beat.html", {"beat": look.BEAT_SECONDS})
        response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'self'"
        return response


def _looked_at(request: HttpRequest, pool_id: int, session_id: int) -> Session:
    if not request.user.has_perm("pool.view_session"):
        raise PermissionDenied
    return get_object_or_404(Session.objects.active().select_related("container__pool"), pk=session_id, container__pool_id=pool_id)
