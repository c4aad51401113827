"""Stand-ins for Docker, the proxy and Redis at their boundary, for unit tests
of the rules that must interleave with an outside call (a drain landing while
a container starts, a listing taken while a spawn completes) or that count
in Redis (the rate limits)."""

import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache

from pool import backends
from pool.backends.base import ContainerInfo, StartedContainer
from proxyapi import Route


class FakeBackend(types.ModuleType):
    """A backend module: containers are names in a dict. ``on_start`` runs
    inside start_container (the test's interleaving) and may raise."""

    def __init__(self, port):
        super().__init__("tests_fake_backend")
        self.port = port  # where every started "container" answers
        self.running = {}
        self.removed = []
        self.on_start = None

    def start_container(self, spec):
        if self.on_start:
            self.on_start(spec)
        self.running[spec.name] = ContainerInfo(f"id-{spec.name}", spec.name, spec.pool, "running")
        return StartedContainer(f"id-{spec.name}", "127.0.0.1", self.port)

    def remove_container(self, backend_id):
        name = backend_id.removeprefix("id-")
        self.removed.append(name)
        self.running.pop(name, None)

    def list_containers(self):
        return list(self.running.values())

    def ensure_network(self, name, pool, internal=False, bridge=""):
        pass

    def remove_networks(self):
        pass


class CountingCache(LocMemCache):
    """The rate limits' store in one process: tmpnb_site.cache.RedisCache's
    count_hit, which tests/test_cache.py checks against a real Redis."""

    def count_hit(self, key, seconds):
        if self.add(key, 1, seconds):
            return 1
        return self.incr(key)


class FakeProxy:
    def __init__(self):
        self.routes = {}

    def add_route(self, path, target, **data):
        self.routes[path] = Route(path, target, None, data)

    def delete_route(self, path):
        self.routes.pop(path, None)

    def list_routes(self, inactive_since=None):
        return dict(self.routes)


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def notebook_stand_in():
    """An HTTP server that answers any path, as a started notebook would."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_backend(monkeypatch, notebook_stand_in):
    fake = FakeBackend(notebook_stand_in)
    monkeypatch.setitem(backends.BACKENDS, settings.TMPNB_BACKEND, fake)
    return fake


@pytest.fixture
def fake_proxy(monkeypatch):
    fake = FakeProxy()
    for module in ("pool.services.ending", "pool.services.upkeep"):
        monkeypatch.setattr(f"{module}.get_proxy", lambda: fake)
    return fake
