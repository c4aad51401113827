from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps  # the module: see TmpnbAdminConfig


class PoolConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "pool"

    def ready(self) -> None:
        from axes.signals import user_locked_out

        from pool.services.events import record_lockout

        # django-axes tells of each lockout through this signal only.
        user_locked_out.connect(record_lockout, dispatch_uid="tmpnb-lockout")


class TmpnbAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with the organiser's dashboard as its home page."""

    # Named in INSTALLED_APPS in place of django.contrib.admin. Not a default:
    # that would leave Django two to choose from for the pool app (nor is
    # AdminConfig imported by name here, for the same reason).
    default = False
    default_site = "pool.admin_site.TmpnbAdminSite"
