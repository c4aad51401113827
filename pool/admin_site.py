"""The admin site, whose home page is the organiser's dashboard."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path
from django.views.decorators.http import require_POST

from pool.models import Session
from pool.services import dashboard, ending

REFRESH_SECONDS = 10


class TmpnbAdminSite(admin.AdminSite):
    site_header = "tmpnb administration"
    site_title = "tmpnb"
    index_title = "Dashboard"
    index_template = "admin/pool/index.html"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [
            path("dashboard/", self.admin_view(self.dashboard_view), name="dashboard"),
            path("dashboard/kill/", self.admin_view(self.kill_view), name="dashboard-kill"),
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
