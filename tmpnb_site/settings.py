"""Settings for tmpnb, all from environment variables.

Every variable, its default and its meaning is listed in the README's options
table; this file is the one place that reads them. A bad value stops start-up
with an ImproperlyConfigured error naming the variable.
"""

import re
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from pool.backends import BACKENDS
from pool.backends.base import ROUTE_TO
from pool.command import CLASSIC_COMMAND, CLASSIC_IMAGE, DEFAULT_COMMAND, DEFAULT_IMAGE, check_command_template
from pool.materials_files import check_source as check_materials_source
from pool.netguard import DENIED_BY_DEFAULT
from pool.options import DEFAULT_CPU_QUOTA, parse_extra_hosts, parse_host_directories
from tmpnb_site.env import (
    env_bool,
    env_bytes_or_none,
    env_float,
    env_int,
    env_int_or_none,
    env_ip,
    env_ip_list,
    env_ipv4_networks,
    env_list,
    env_map,
    env_size,
    env_str,
    env_url,
    is_set,
)

# Lets the admin's classes be written with their model, as the type checker
# reads them (admin.ModelAdmin[Pool]): Django's own classes take no type arguments.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TMPNB_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # the SQLite file and beat's schedule live here

# --- Django -----------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)
# Only for development: production start-up refuses it (deploy/up makes a real one).
_DEV_SECRET = "tmpnb-development-secret-key-do-not-use-in-production"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", _DEV_SECRET)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["*"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "pool.apps.TmpnbAdminConfig",  # django.contrib.admin, with the dashboard as its home page
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "axes",
    "pool",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Each origin serves only its own pages (notebooks', the admin's, the participants').
    "pool.origins.OriginMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The participant's language: the switcher's cookie, else Accept-Language, else TMPNB_LANGUAGE.
    "tmpnb_site.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

# Admin logins: django-axes counts failures and locks out, for a while, an
# address or a user name that failed too often (pool/apps.py logs each lockout
# in the event log). Its records are in the admin (Access attempts); an
# organiser unlocks by deleting them, or with `manage.py axes_reset`.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("TMPNB_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("TMPNB_LOGIN_LOCKOUT", 900, minimum=1))
# A user name from one address: five wrong passwords from anywhere must not
# lock the organiser out.
AXES_LOCKOUT_PARAMETERS = [["ip_address", "username"]]
AXES_RESET_ON_SUCCESS = True
# The client as the proxy names it (pool/http.py), not the proxy itself.
AXES_CLIENT_IP_CALLABLE = "pool.http.client_address"
AXES_LOCKOUT_TEMPLATE = "pool/login_locked.html"
# Its start-up banner would be the first line of every management command's output.
AXES_VERBOSE = False

ROOT_URLCONF = "tmpnb_site.urls"
WSGI_APPLICATION = "tmpnb_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_DEFAULT_DB = f"sqlite:///{VAR_DIR / 'tmpnb.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(env_url("DATABASE_URL", _DEFAULT_DB, ["sqlite", "postgres", "postgresql"]))}
except ValueError as error:
    raise ImproperlyConfigured(f"DATABASE_URL: {error}") from None
# Keep connections across requests: reconnecting (and, on SQLite, running the
# PRAGMAs below) was a tenth of a request's time in the burst benchmark.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("TMPNB_DB_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several gunicorn and Celery processes write at once: WAL lets readers go on
    # while one writes, IMMEDIATE takes the write lock at BEGIN so two claimers
    # queue up instead of failing with "database is locked" half-way.
    # tmpnb_site/sqlite3: the threads of a process queue for the write lock
    # among themselves instead of sleeping in SQLite's busy handler.
    DATABASES["default"]["ENGINE"] = "tmpnb_site.sqlite3"
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that the worker and web processes started by the
    # integration tests see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# The participant's pages come in these languages (catalogues in locale/,
# compiled by deploy/lib.sh); README "Languages" says how to add one.
LANGUAGES = [
    ("en", "English"),
    ("fr", "French"),
    ("de", "German"),
    ("es", "Spanish"),
    ("pt", "Portuguese"),
    ("it", "Italian"),
    ("ja", "Japanese"),
    ("zh-hans", "Simplified Chinese"),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The language of a visitor whose browser asks for none of LANGUAGES.
LANGUAGE_CODE = env_str("TMPNB_LANGUAGE", "en").lower()
if LANGUAGE_CODE not in dict(LANGUAGES):
    raise ImproperlyConfigured(f"TMPNB_LANGUAGE must be one of {', '.join(dict(LANGUAGES))}, not {LANGUAGE_CODE!r}")
TIME_ZONE = env_str("TMPNB_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# /static/ itself is left to TMPNB_STATIC_FILES, as in tmpnb.
STATIC_URL = "tmpnb-static/"
# The admin's CSS and JS are served by the app itself (WhiteNoise) straight from
# the installed apps, so gunicorn needs no web server in front and no
# collectstatic step.
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("TMPNB_LOG_LEVEL", "INFO")},
    "loggers": {"docker": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}
# gunicorn's access log, one line per request in web.log: deploy/up reads
# the variable itself; it is checked here so that a bad value stops start-up.
TMPNB_ACCESS_LOG = env_bool("TMPNB_ACCESS_LOG", False)

# --- Outside systems --------------------------------------------------------

REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", ["redis", "rediss"])
CONFIGPROXY_ENDPOINT = env_url("CONFIGPROXY_ENDPOINT", "http://127.0.0.1:8001", ["http", "https"]).rstrip("/")
CONFIGPROXY_AUTH_TOKEN = env_str("CONFIGPROXY_AUTH_TOKEN", "")

# Outside development, no secret may be left at its default: the secret key
# signs visitors' cookies (who holds which notebook) and the proxy token
# controls every route.
if not DEBUG:
    if SECRET_KEY == _DEV_SECRET:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set (deploy/up makes one; deploy/manage runs a command with it); only DJANGO_DEBUG=true runs without it"
        )
    if not CONFIGPROXY_AUTH_TOKEN:
        raise ImproperlyConfigured(
            "CONFIGPROXY_AUTH_TOKEN must be set (deploy/up makes one; deploy/manage runs a command with it); only DJANGO_DEBUG=true runs without it"
        )
DOCKER_HOST = env_str("DOCKER_HOST", "unix:///var/run/docker.sock")
# Where notebooks run (pool/backends/): one Docker Engine, or a Swarm whose
# manager is DOCKER_HOST.
TMPNB_BACKEND = env_str("TMPNB_BACKEND", "docker")
if TMPNB_BACKEND not in BACKENDS:
    raise ImproperlyConfigured(f"TMPNB_BACKEND must be one of {', '.join(BACKENDS)}, not {TMPNB_BACKEND!r}")
# Seconds a Swarm node may stay not ready (unknown, disconnected) before its
# notebooks count as lost. A leadership change or a manager restart marks every
# node unknown for a few seconds; Swarm itself marks a node that never comes
# back down, which ends its notebooks at once: this only bounds the wait.
TMPNB_NODE_GRACE = env_int("TMPNB_NODE_GRACE", 60, minimum=1)
# The engine of each Swarm node, by hostname, for copying files out of and
# into the notebooks it runs (saved work, materials, static files): the
# manager does not relay a node's engine. An engine on the network is reached
# over mutual TLS only, with the client certificate in TMPNB_SWARM_ENGINE_CERTS
# (Docker's ca.pem, cert.pem and key.pem, as `docker --tlsverify` reads them).
TMPNB_SWARM_NODE_ENGINES = env_map("TMPNB_SWARM_NODE_ENGINES")
TMPNB_SWARM_ENGINE_CERTS = env_str("TMPNB_SWARM_ENGINE_CERTS", "")
# An image every Swarm node holds (it is never pulled), with sh and chroot: the
# network guard runs each node's own iptables from a short-lived container of
# it (NET_ADMIN, on the node's host network; pool/backends/swarm.py).
TMPNB_SWARM_GUARD_IMAGE = env_str("TMPNB_SWARM_GUARD_IMAGE", env_str("TMPNB_IMAGE", DEFAULT_IMAGE))
for _node, _engine in TMPNB_SWARM_NODE_ENGINES.items():
    if not _engine.startswith(("unix://", "tcp://")):
        raise ImproperlyConfigured(f"TMPNB_SWARM_NODE_ENGINES: the engine of {_node} must be unix://... or tcp://..., not {_engine!r}")
    if _engine.startswith("tcp://") and not TMPNB_SWARM_ENGINE_CERTS:
        raise ImproperlyConfigured(f"TMPNB_SWARM_NODE_ENGINES: {_node}'s engine is on the network, which needs TLS: set TMPNB_SWARM_ENGINE_CERTS")
if TMPNB_SWARM_ENGINE_CERTS:
    for _pem in ("ca.pem", "cert.pem", "key.pem"):
        if not Path(TMPNB_SWARM_ENGINE_CERTS, _pem).is_file():
            raise ImproperlyConfigured(f"TMPNB_SWARM_ENGINE_CERTS: {TMPNB_SWARM_ENGINE_CERTS} holds no {_pem}")
# How the proxy reaches a notebook: at its address on a Docker network
# ("container", the default with a local engine: no userland docker-proxy hop,
# see docs/performance.md) or at a port published on the host ("published":
# what a Swarm or an engine on another machine needs).
_LOCAL_ENGINE = TMPNB_BACKEND == "docker" and DOCKER_HOST.startswith("unix://")
TMPNB_ROUTE_TO = env_str("TMPNB_ROUTE_TO", "container" if _LOCAL_ENGINE else "published")
if TMPNB_ROUTE_TO not in ROUTE_TO:
    raise ImproperlyConfigured(f"TMPNB_ROUTE_TO must be one of {', '.join(ROUTE_TO)}, not {TMPNB_ROUTE_TO!r}")
if TMPNB_ROUTE_TO == "container" and TMPNB_BACKEND == "swarm":
    raise ImproperlyConfigured("TMPNB_ROUTE_TO=container is not available with TMPNB_BACKEND=swarm: use published")
# Firewall rules that keep notebooks on the service's own networks away from
# the host's services, from private, shared, link-local and metadata addresses,
# and from each other (pool/netguard.py). The worker installs them as it starts
# and each heartbeat checks them.
TMPNB_NETWORK_GUARD = env_bool("TMPNB_NETWORK_GUARD", True)
TMPNB_GUARD_DENY = env_ipv4_networks("TMPNB_GUARD_DENY", DENIED_BY_DEFAULT)
# Exceptions to the deny list, reachable whole (a package mirror on the LAN).
TMPNB_GUARD_ALLOW = env_ipv4_networks("TMPNB_GUARD_ALLOW", ())
TMPNB_GUARD_PEERS = env_bool("TMPNB_GUARD_PEERS", False)

# Shared by every web process (the spawn rate limit); short timeouts so an
# absent Redis slows no request down.
CACHES = {
    "default": {
        "BACKEND": "tmpnb_site.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}
DOCKER_TIMEOUT = env_int("TMPNB_DOCKER_TIMEOUT", 30, minimum=1)

# --- Origins, cookies and HTTPS (README "Safety") ------------------------------

# A participant controls everything in their container, so no notebook shares
# an origin with the service's pages or the admin. With a domain (wildcard
# DNS), notebook <id> is served at <id>.<domain>, each on an origin of its own;
# without one, the notebooks share the proxy's second port, TMPNB_NOTEBOOK_PORT.
TMPNB_NOTEBOOK_DOMAIN = env_str("TMPNB_NOTEBOOK_DOMAIN", "").lower().strip(".")
if TMPNB_NOTEBOOK_DOMAIN and not re.match(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$", TMPNB_NOTEBOOK_DOMAIN):
    raise ImproperlyConfigured(f"TMPNB_NOTEBOOK_DOMAIN must be a DNS name such as nb.example.org, not {TMPNB_NOTEBOOK_DOMAIN!r}")
TMPNB_PUBLIC_PORT = env_int("TMPNB_PUBLIC_PORT", 8000, minimum=1, maximum=65535)
TMPNB_NOTEBOOK_PORT = env_int("TMPNB_NOTEBOOK_PORT", 8002, minimum=1, maximum=65535)
if not TMPNB_NOTEBOOK_DOMAIN and TMPNB_NOTEBOOK_PORT == TMPNB_PUBLIC_PORT:
    raise ImproperlyConfigured(f"TMPNB_NOTEBOOK_PORT ({TMPNB_NOTEBOOK_PORT}) must differ from TMPNB_PUBLIC_PORT: the notebooks need an origin of their own")
# Where a notebook's origin sends its participant back to the service's pages
# (an ended notebook's page): with a domain, this host; none, the domain itself
# (JupyterHub's subdomain_host: the service at nb.example.org, notebooks at <id>.nb.example.org).
TMPNB_PUBLIC_HOST = env_str("TMPNB_PUBLIC_HOST", "").lower()
# The admin only on this host, and nothing else there (none: the admin is on
# the participants' host, whose pages hold nothing a participant wrote).
TMPNB_ADMIN_HOST = env_str("TMPNB_ADMIN_HOST", "").lower()
for _name, _host in (("TMPNB_PUBLIC_HOST", TMPNB_PUBLIC_HOST), ("TMPNB_ADMIN_HOST", TMPNB_ADMIN_HOST)):
    if TMPNB_NOTEBOOK_DOMAIN and _host.endswith("." + TMPNB_NOTEBOOK_DOMAIN):
        raise ImproperlyConfigured(f"{_name} ({_host}) cannot be a notebook's host under TMPNB_NOTEBOOK_DOMAIN")
# HTTPS, served by the proxy (a wildcard certificate for the notebook domain),
# which reads the files; here they only say that the pages are served over HTTPS.
TMPNB_TLS_CERT = env_str("TMPNB_TLS_CERT", "")
TMPNB_TLS_KEY = env_str("TMPNB_TLS_KEY", "")
if bool(TMPNB_TLS_CERT) != bool(TMPNB_TLS_KEY):
    raise ImproperlyConfigured("TMPNB_TLS_CERT and TMPNB_TLS_KEY go together: set both (HTTPS) or neither")
TMPNB_TLS = bool(TMPNB_TLS_CERT)
# The proxy replaces the client's X-Forwarded-Proto with its own (deploy/proxy/tmpnb-proxy.mjs).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Every cookie of the service starts with tmpnb_: the proxy strips those names
# from every request to a notebook's origin and refuses a notebook's answer
# that sets one. With HTTPS they are __Host- cookies, which no other host (a
# notebook's script on a sibling name included) can set or overwrite.
_COOKIE_PREFIX = "__Host-tmpnb_" if TMPNB_TLS else "tmpnb_"
SESSION_COOKIE_NAME = _COOKIE_PREFIX + "session"
CSRF_COOKIE_NAME = _COOKIE_PREFIX + "csrf"
LANGUAGE_COOKIE_NAME = _COOKIE_PREFIX + "language"
TMPNB_VISITOR_COOKIE = _COOKIE_PREFIX + "visitor"
TMPNB_CODE_COOKIE = _COOKIE_PREFIX + "code"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = LANGUAGE_COOKIE_SECURE = TMPNB_TLS
# The organiser's session is never sent with a request another site started.
SESSION_COOKIE_SAMESITE = "Strict"
# No script reads the CSRF cookie (the admin's forms carry the token).
CSRF_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_HTTPONLY = True

# --- tmpnb options (the seed README's table) -------------------------------

TMPNB_INSTALLATION = env_str("TMPNB_INSTALLATION", "tmpnb")
TMPNB_PORT = env_int("TMPNB_PORT", 9999, minimum=1, maximum=65535)
TMPNB_DOCKER_VERSION = env_str("TMPNB_DOCKER_VERSION", "auto")
TMPNB_MAX_DOCK_WORKERS = env_int("TMPNB_MAX_DOCK_WORKERS", 2, minimum=1, maximum=64)
TMPNB_CULL_PERIOD = env_int("TMPNB_CULL_PERIOD", 600, minimum=1)
TMPNB_HEARTBEAT = env_float("TMPNB_HEARTBEAT", 5.0, minimum=0.2)
TMPNB_SPAWN_TIMEOUT = env_int("TMPNB_SPAWN_TIMEOUT", 60, minimum=1)
TMPNB_SPAWN_BACKOFF = env_float("TMPNB_SPAWN_BACKOFF", 2.0, minimum=0)
TMPNB_SPAWN_FAILURES_TO_PAUSE = env_int("TMPNB_SPAWN_FAILURES_TO_PAUSE", 5, minimum=1)
TMPNB_PIDS_LIMIT = env_int("TMPNB_PIDS_LIMIT", 256, minimum=16)
# Abuse limits. A workshop on shared Wi-Fi puts everyone behind one address:
# raise TMPNB_MAX_PER_IP to the head count there.
# Seconds after which a visitor whose waiting page stopped checking in leaves the queue.
TMPNB_QUEUE_TIMEOUT = env_int("TMPNB_QUEUE_TIMEOUT", 30, minimum=5)
TMPNB_MAX_PER_IP = env_int("TMPNB_MAX_PER_IP", 30, minimum=1)
# Waiting pages' status requests one web process lets wait for their turn at
# once (each holds a thread: deploy/up gives gunicorn this many more threads).
TMPNB_LONG_POLLS = env_int("TMPNB_LONG_POLLS", 16, minimum=0, maximum=1000)
# Requests of a web process that run at once (tmpnb_site/concurrency.py).
TMPNB_WEB_CONCURRENCY = env_int("TMPNB_WEB_CONCURRENCY", 2, minimum=1, maximum=1000)
TMPNB_SPAWN_RATE = env_str("TMPNB_SPAWN_RATE", "600/m")
# Guesses at a pool's access code one address may make per period.
TMPNB_ACCESS_CODE_RATE = env_str("TMPNB_ACCESS_CODE_RATE", "10/m")
# Resume codes typed at /resume/ per period: by one address, and at one code.
TMPNB_RESUME_RATE = env_str("TMPNB_RESUME_RATE", "10/m")
# Hands raised or lowered and names typed from inside one notebook per period.
TMPNB_HAND_RATE = env_str("TMPNB_HAND_RATE", "10/m")
for _name, _rate in (
    ("TMPNB_SPAWN_RATE", TMPNB_SPAWN_RATE),
    ("TMPNB_ACCESS_CODE_RATE", TMPNB_ACCESS_CODE_RATE),
    ("TMPNB_RESUME_RATE", TMPNB_RESUME_RATE),
    ("TMPNB_HAND_RATE", TMPNB_HAND_RATE),
):
    if not re.match(r"^\d+/\d*[smhd]$", _rate):
        raise ImproperlyConfigured(f"{_name} must be requests per period such as 600/m or 20/s, not {_rate!r}")
# User agents (substrings) answered with a link preview, besides pool/visitors.py's list.
TMPNB_PREVIEW_AGENTS = env_list("TMPNB_PREVIEW_AGENTS", [])
# Peers whose X-Forwarded-For is believed: the proxy's address.
TMPNB_TRUSTED_PROXIES = env_ip_list("TMPNB_TRUSTED_PROXIES", ["127.0.0.1", "::1"])
TMPNB_STATIC_FILES = env_str("TMPNB_STATIC_FILES")
if TMPNB_STATIC_FILES and not TMPNB_STATIC_FILES.startswith("/"):
    raise ImproperlyConfigured(f"TMPNB_STATIC_FILES must be an absolute path inside the container, not {TMPNB_STATIC_FILES!r}")
# The dashboard's usage chart: one sample of every pool each period, kept this many days.
# Workshop materials (pool/services/materials.py): the most they may unpack
# to, and how long a git clone of them may take.
TMPNB_MATERIALS_MAX_MB = env_int("TMPNB_MATERIALS_MAX_MB", 200, minimum=1, maximum=100000)
TMPNB_MATERIALS_GIT_TIMEOUT = env_int("TMPNB_MATERIALS_GIT_TIMEOUT", 120, minimum=1, maximum=3600)
TMPNB_SAMPLE_PERIOD = env_int("TMPNB_SAMPLE_PERIOD", 60, minimum=1)
TMPNB_SAMPLE_DAYS = env_int("TMPNB_SAMPLE_DAYS", 14, minimum=1)
# Ended containers, sessions, queue places and events older than this are
# pruned by the heartbeat; /metrics carries their counts forward.
TMPNB_HISTORY_DAYS = env_int("TMPNB_HISTORY_DAYS", 90, minimum=1, maximum=36500)
# A participant's files are saved as a zip when their session ends (culls, kills,
# stop_pools), kept this many hours (0: none are taken), then pruned by the heartbeat.
TMPNB_SNAPSHOT_HOURS = env_int("TMPNB_SNAPSHOT_HOURS", 48, minimum=0, maximum=24 * 365)
# How long a helper may stay once a participant accepts them (pool/services/live.py).
TMPNB_LIVE_HELP_MINUTES = env_int("TMPNB_LIVE_HELP_MINUTES", 30, minimum=1, maximum=8 * 60)
# Hours a participant's resume code works after it was made (pool/services/resume.py).
TMPNB_RESUME_HOURS = env_int("TMPNB_RESUME_HOURS", 24, minimum=1, maximum=24 * 365)
TMPNB_SNAPSHOT_MAX_MB = env_int("TMPNB_SNAPSHOT_MAX_MB", 200, minimum=1, maximum=100_000)
TMPNB_SNAPSHOT_MAX_FILES = env_int("TMPNB_SNAPSHOT_MAX_FILES", 10_000, minimum=1, maximum=1_000_000)
# How long a copy may take before the container is removed without the rest.
TMPNB_SNAPSHOT_TIMEOUT = env_int("TMPNB_SNAPSHOT_TIMEOUT", 60, minimum=1, maximum=3600)
# Notebooks a collection of everyone's work (or a broadcast) copies at once;
# their Docker calls are bounded by TMPNB_MAX_DOCK_WORKERS as well.
TMPNB_COPIES_AT_ONCE = env_int("TMPNB_COPIES_AT_ONCE", 4, minimum=1, maximum=64)
# What a workshop's headcount is checked against (pool/services/workshops.py):
# memory per notebook, measured (a ready JupyterLab with its waiting kernel,
# README), and the machine's memory (0: /proc/meminfo's MemTotal).
TMPNB_NOTEBOOK_MEMORY_MB = env_int("TMPNB_NOTEBOOK_MEMORY_MB", 88, minimum=1, maximum=1_000_000)
TMPNB_MACHINE_MEMORY_MB = env_int("TMPNB_MACHINE_MEMORY_MB", 0, minimum=0, maximum=1_000_000_000)
if TMPNB_SNAPSHOT_HOURS > 24 * TMPNB_HISTORY_DAYS:
    # The row that references a zip goes with its session's history.
    raise ImproperlyConfigured(f"TMPNB_SNAPSHOT_HOURS ({TMPNB_SNAPSHOT_HOURS}) cannot exceed TMPNB_HISTORY_DAYS ({TMPNB_HISTORY_DAYS}) in hours")
# Bytes a notebook may write (its container's writable layer, the home folder
# in the usual images), measured every TMPNB_DISK_PERIOD seconds
# (pool/services/disk.py); None: no limit.
TMPNB_DISK_LIMIT = env_bytes_or_none("TMPNB_DISK_LIMIT", "2g", minimum="1m")
TMPNB_DISK_PERIOD = env_int("TMPNB_DISK_PERIOD", 15, minimum=1, maximum=3600)
# Tokens for the API: POST /api/spawn needs TMPNB_API_TOKEN, DELETE /api/pool
# needs TMPNB_ADMIN_TOKEN; each endpoint is refused while its token is unset.
TMPNB_API_TOKEN = env_str("TMPNB_API_TOKEN")
TMPNB_ADMIN_TOKEN = env_str("TMPNB_ADMIN_TOKEN")
# /metrics answers a request with this bearer token, or one from loopback.
TMPNB_METRICS_TOKEN = env_str("TMPNB_METRICS_TOKEN")


# The service's own files, which no notebook may mount or receive as materials
# (pool/options.py adds the host's system folders): the code, the database,
# the participants' saved work and prepared materials, and deploy/up's secrets.
TMPNB_PROTECTED_PATHS = [str(BASE_DIR), *(str(VAR_DIR / name) for name in ("snapshots", "materials"))]
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    TMPNB_PROTECTED_PATHS.append(str(DATABASES["default"]["NAME"]))
if is_set("TMPNB_STATE"):
    TMPNB_PROTECTED_PATHS.append(str(Path(env_str("TMPNB_STATE", "")) / "secrets.env"))


T = TypeVar("T")


def _checked(name: str, value: T, check: Callable[[T], object]) -> T:
    try:
        check(value)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None
    return value


_IMAGE = env_str("TMPNB_IMAGE", DEFAULT_IMAGE)
# The classic image knows only NotebookApp options and has no /lab: choosing
# it brings its own command and landing page unless those are set too.
_CLASSIC = _IMAGE == CLASSIC_IMAGE
_COMMAND = env_str("TMPNB_COMMAND", CLASSIC_COMMAND if _CLASSIC else DEFAULT_COMMAND)
_REDIRECT_URI = env_str("TMPNB_REDIRECT_URI", "/tree" if _CLASSIC else "/lab")
_POOL_OPTIONS: dict[str, tuple[str, Any]] = {
    # pool field: (variable, value)
    "capacity": ("TMPNB_POOL_SIZE", env_int("TMPNB_POOL_SIZE", 10, minimum=0, maximum=10000)),
    "ready_target": ("TMPNB_READY_TARGET", env_int("TMPNB_READY_TARGET", None, minimum=0)),
    "image": ("TMPNB_IMAGE", _IMAGE),
    "command": ("TMPNB_COMMAND", _checked("TMPNB_COMMAND", _COMMAND, check_command_template)),
    "mem_limit": ("TMPNB_MEM_LIMIT", env_size("TMPNB_MEM_LIMIT", "512m")),
    "cpu_shares": ("TMPNB_CPU_SHARES", env_int("TMPNB_CPU_SHARES", None, minimum=2, maximum=262144)),
    "cpu_quota": ("TMPNB_CPU_QUOTA", env_int_or_none("TMPNB_CPU_QUOTA", DEFAULT_CPU_QUOTA, minimum=1000)),
    "container_ip": ("TMPNB_CONTAINER_IP", env_ip("TMPNB_CONTAINER_IP", "127.0.0.1")),
    "container_port": ("TMPNB_CONTAINER_PORT", env_int("TMPNB_CONTAINER_PORT", 8888, minimum=1, maximum=65535)),
    "container_user": ("TMPNB_CONTAINER_USER", env_str("TMPNB_CONTAINER_USER", "")),
    "host_network": ("TMPNB_HOST_NETWORK", env_bool("TMPNB_HOST_NETWORK", False)),
    "docker_network": ("TMPNB_DOCKER_NETWORK", env_str("TMPNB_DOCKER_NETWORK", "")),
    "internal_network": ("TMPNB_INTERNAL_NETWORK", env_bool("TMPNB_INTERNAL_NETWORK", False)),
    "host_directories": (
        "TMPNB_HOST_DIRECTORIES",
        _checked("TMPNB_HOST_DIRECTORIES", env_str("TMPNB_HOST_DIRECTORIES", ""), partial(parse_host_directories, protected=TMPNB_PROTECTED_PATHS)),
    ),
    "extra_hosts": ("TMPNB_EXTRA_HOSTS", _checked("TMPNB_EXTRA_HOSTS", env_str("TMPNB_EXTRA_HOSTS", ""), parse_extra_hosts)),
    "use_tokens": ("TMPNB_USE_TOKENS", env_bool("TMPNB_USE_TOKENS", True)),
    # With a notebook domain, <id> is a DNS label: 63 characters at most.
    "user_length": ("TMPNB_USER_LENGTH", env_int("TMPNB_USER_LENGTH", 12, minimum=8, maximum=63 if TMPNB_NOTEBOOK_DOMAIN else 64)),
    "redirect_uri": ("TMPNB_REDIRECT_URI", _REDIRECT_URI if _REDIRECT_URI.startswith("/") else "/" + _REDIRECT_URI),
    "cull_timeout": ("TMPNB_CULL_TIMEOUT", env_int("TMPNB_CULL_TIMEOUT", 3600, minimum=1)),
    "cull_max": ("TMPNB_CULL_MAX", env_int("TMPNB_CULL_MAX", 14400, minimum=1)),
    "access_code": ("TMPNB_ACCESS_CODE", env_str("TMPNB_ACCESS_CODE", "")),
    "materials_source": (
        "TMPNB_MATERIALS",
        _checked("TMPNB_MATERIALS", env_str("TMPNB_MATERIALS", ""), partial(check_materials_source, protected=TMPNB_PROTECTED_PATHS)),
    ),
    "materials_branch": ("TMPNB_MATERIALS_BRANCH", env_str("TMPNB_MATERIALS_BRANCH", "")),
}
_size, _target = _POOL_OPTIONS["capacity"][1], _POOL_OPTIONS["ready_target"][1]
if _target is not None and _target > _size:
    raise ImproperlyConfigured(f"TMPNB_READY_TARGET ({_target}) cannot exceed TMPNB_POOL_SIZE ({_size})")
if TMPNB_BACKEND == "swarm" and _POOL_OPTIONS["host_network"][1]:
    raise ImproperlyConfigured("TMPNB_HOST_NETWORK=true is not available with TMPNB_BACKEND=swarm: the proxy reaches a notebook at its node's published port")
if TMPNB_BACKEND == "swarm" and _POOL_OPTIONS["internal_network"][1] and not TMPNB_NETWORK_GUARD:
    # On a Swarm only the guard's rules cut the internal network off (README "Backends").
    raise ImproperlyConfigured("TMPNB_INTERNAL_NETWORK=true with TMPNB_BACKEND=swarm needs TMPNB_NETWORK_GUARD=true")

# The default pool is made from these; `manage.py init_pool` also writes the
# ones set explicitly in the environment onto an existing pool (see README).
TMPNB_DEFAULT_POOL: dict[str, Any] = {"name": env_str("TMPNB_POOL_NAME", "default")} | {f: v for f, (_, v) in _POOL_OPTIONS.items()}
TMPNB_POOL_FROM_ENVIRONMENT = sorted(field for field, (name, _) in _POOL_OPTIONS.items() if is_set(name))

# --- CORS on the API (django-cors-headers) -----------------------------------

CORS_URLS_REGEX = r"^/api/.*$"
_ALLOW_ORIGIN = env_str("TMPNB_ALLOW_ORIGIN")
CORS_ALLOW_ALL_ORIGINS = _ALLOW_ORIGIN == "*"
CORS_ALLOWED_ORIGINS = [] if not _ALLOW_ORIGIN or CORS_ALLOW_ALL_ORIGINS else [o.strip() for o in _ALLOW_ORIGIN.split(",")]
CORS_ALLOW_CREDENTIALS = env_bool("TMPNB_ALLOW_CREDENTIALS", False)
CORS_ALLOW_HEADERS = env_list("TMPNB_ALLOW_HEADERS", ["accept", "authorization", "content-type"])
CORS_ALLOW_METHODS = env_list("TMPNB_ALLOW_METHODS", ["GET", "POST", "DELETE", "OPTIONS"])
CORS_EXPOSE_HEADERS = env_list("TMPNB_EXPOSE_HEADERS", ["Retry-After"])
CORS_PREFLIGHT_MAX_AGE = env_int("TMPNB_MAX_AGE", 86400, minimum=0)

# --- Celery -----------------------------------------------------------------

CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
# Threads, not processes: a spawn spends most of its time waiting for the
# notebook to answer, and Docker calls themselves are bounded by
# TMPNB_MAX_DOCK_WORKERS (pool/backends/client.py).
CELERY_WORKER_POOL = "threads"
CELERY_WORKER_CONCURRENCY = TMPNB_MAX_DOCK_WORKERS * 4
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# No CELERY_TASK_TIME_LIMIT: the threads pool cannot stop a thread, so Celery
# ignores it. Every task is bounded by its own deadlines instead: a spawn by
# TMPNB_SPAWN_TIMEOUT (its server answering) and TMPNB_DOCKER_TIMEOUT (each
# Docker call, and the wait for a Docker slot), the proxy's calls by
# proxyapi's short timeouts, the database by its lock timeout.
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# A web request that queues a task must not hang while Redis is away.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
