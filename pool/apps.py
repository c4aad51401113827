from django.apps import AppConfig
# The module, not the class: a second AppConfig class in this module's names
# would leave Django unable to tell which one is the pool app's.
from django.contrib.admin import apps as admin_apps


class PoolConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'pool'


class TmpnbAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with the organiser's dashboard as its home page."""

    default = False  # named in INSTALLED_APPS in place of django.contrib.admin
    default_site = "pool.admin_site.TmpnbAdminSite"
