from django.contrib import admin
from django.urls import include, path, re_path

from pool import api, views

urlpatterns = [
    path("", views.spawn, name="landing"),
    path("spawn/", views.spawn, name="spawn"),
    path("waiting/status", views.waiting_status, name="spawn-status"),
    path("waiting/name", views.waiting_name, name="waiting-name"),
    path("spawn/<path:path>", views.spawn, name="spawn-path"),
    # Each named pool's own landing page and deep links.
    path("p/<slug:pool_name>/", views.spawn, name="pool-landing"),
    path("p/<slug:pool_name>/spawn/", views.spawn, name="pool-spawn"),
    path("p/<slug:pool_name>/spawn/<path:path>", views.spawn, name="pool-spawn-path"),
    # Only requests the proxy has no route for reach these.
    re_path(r"^user/(?P<path_id>[A-Za-z0-9]+)/?$", views.user_fallback),
    path("user/<str:path_id>/<path:rest>", views.user_fallback, name="user-fallback"),
    # An ended notebook's saved files, for the visitor who held it.
    path("ended/<str:path_id>/work.zip", views.download_work, name="work-download"),
    path("ended/<str:path_id>/restore", views.start_again_with_files, name="work-restore"),
    # A participant's resume code, and where one typed on another device opens their notebook.
    path("resume/", views.resume_page, name="resume"),
    # The warning inside a held notebook asks how long it has before a cull.
    path("api/notebooks/<str:path_id>/time-left", views.notebook_time_left, name="notebook-time-left"),
    # Its raised hand and its holder's name, from the same banner.
    path("api/notebooks/<str:path_id>/hand", views.notebook_hand, name="notebook-hand"),
    path("api/notebooks/<str:path_id>/name", views.notebook_name, name="notebook-name"),
    path("api/notebooks/<str:path_id>/live", views.notebook_live, name="notebook-live"),
    path("static/<path:path>", views.static_files, name="static-files"),
    # The API answers with or without a trailing slash: POST and DELETE cannot be redirected.
    re_path(r"^api/spawn/?$", api.spawn, name="api-spawn"),
    re_path(r"^api/spawn/(?P<ticket>[0-9a-f]{32})/?$", api.spawn_status, name="api-spawn-status"),
    re_path(r"^api/stats/?$", api.stats, name="api-stats"),
    re_path(r"^api/pool/?$", api.drain, name="api-pool"),
    path("metrics", api.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # The participant pages' language switcher posts to set_language here.
    path("i18n/", include("django.conf.urls.i18n")),
]
