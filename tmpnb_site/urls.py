from django.contrib import admin
from django.urls import path

from pool import views

admin.site.site_header = "tmpnb administration"
admin.site.site_title = "tmpnb"

urlpatterns = [
    path("", views.spawn, name="landing"),
    path("spawn/", views.spawn, name="spawn"),
    path("spawn/<path:path>", views.spawn, name="spawn-path"),
    path("admin/", admin.site.urls),
]
