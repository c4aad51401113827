"""The admin site, whose home page is the organiser's dashboard."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path
from django.views.decorators.http import require_POST

from pool.http import no_store
from pool.models import Pool, Session
from pool.services import dashboard, ending, pools, room

REFRESH_SECONDS = 10
ROOM_REFRESH_SECONDS = 5


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
