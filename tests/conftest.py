import contextlib
import functools
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.test.utils import override_settings
from whitenoise.middleware import WhiteNoiseMiddleware

from pool import netguard
from pool.backends import docker as docker_backend
from pool.services import ending, pools, worker
from pool.tasks import heartbeat_task
from tests import stack
from tests.factories import CLASSIC_JUPYTER_IMAGE, JUPYTER_IMAGE, TINY_IMAGE, new_visitor
from tests.swarm import SwarmLab
from tmpnb_site.celery import app as celery_app

# The stand-ins' fixtures (fake_backend, fake_proxy, notebook_stand_in), for every test.
pytest_plugins = ["tests.fakes"]

CLOSED = "http://127.0.0.1:9"  # nothing listens: tests that need a part start their own
# Where a unit test finds Docker: a socket that does not exist (its name says
# why), so a test that needs the engine fails until it is in the integration tier.
NO_DOCKER = "unix:///nonexistent/unit-tests-reach-no-docker-mark-the-test-integration.sock"

# The two tiers (pytest.ini's markers; deploy/test --fast runs the unit tier).
# A test is in the integration tier when it lives in tests/integration/, uses
# one of these fixtures (directly or through another fixture), or is marked
# integration itself; every other test is a unit test.
INTEGRATION_FIXTURES = {"docker_engine", "redis_server", "proxy", "swarm_lab"}


def pytest_collection_modifyitems(config, items):
    integration_folder = Path(__file__).parent / "integration"
    for item in items:
        if integration_folder in item.path.parents or INTEGRATION_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def isolated_settings(tmp_path_factory):
    """This test run's own installation label, and no route to any real
    service's proxy or broker, so a running tmpnb on this host is never touched."""
    settings.TMPNB_INSTALLATION = f"test{secrets.token_hex(3)}"
    settings.CONFIGPROXY_ENDPOINT = CLOSED
    settings.CONFIGPROXY_AUTH_TOKEN = "none"
    use_redis("redis://127.0.0.1:9/0")
    settings.TMPNB_SPAWN_TIMEOUT = 30
    # The host's firewall is left alone, except by the tests of the guard itself.
    settings.TMPNB_NETWORK_GUARD = False


@pytest.fixture(autouse=True)
def tier(request):
    """An integration test has its containers checked after it. A unit test
    has no Docker engine or proxy to reach (even once an integration test has
    started the session's proxy), so it cannot leave a container or route unchecked."""
    if request.node.get_closest_marker("integration"):
        request.getfixturevalue("no_containers_left_behind")
        return
    settings = request.getfixturevalue("settings")
    settings.DOCKER_HOST = NO_DOCKER
    request.getfixturevalue("monkeypatch").setenv("DOCKER_HOST", NO_DOCKER)
    settings.CONFIGPROXY_ENDPOINT = CLOSED
    # Logins in a blink: the default hasher spends a second on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def docker_engine():
    """The real Docker engine. At the end of the session, whatever still
    carries this run's label is removed (after a test that failed its check)."""
    yield
    leftovers = docker_backend.list_containers()
    for info in leftovers:
        docker_backend.remove_container(info.backend_id)
    docker_backend.remove_networks()


@pytest.fixture(scope="session", autouse=True)
def static_files_read_once():
    """Django's test Client makes its middleware anew for each client, and
    WhiteNoise then reads every static file's headers again (a server does it
    once per process): the tests' clients share the first reading."""
    read = WhiteNoiseMiddleware.add_files_from_finders
    first_reading = {}

    def add_files_from_finders(middleware):
        if not first_reading:
            read(middleware)
            first_reading.update(middleware.files)
        middleware.files.update(first_reading)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WhiteNoiseMiddleware, "add_files_from_finders", add_files_from_finders)
        yield


def use_redis(url):
    """Point the broker and the cache (the rate limit's store) at ``url``."""
    settings.REDIS_URL = url
    celery_app.conf.broker_url = url
    # override_settings, so Django drops the cache connections it made.
    override_settings(CACHES={**settings.CACHES, "default": {**settings.CACHES["default"], "LOCATION": url}}).enable()


@pytest.fixture
def client(client):
    """A browser past the cookie step: it holds a visitor cookie, as one does
    after following the landing page's first redirect (pool/visitors.py)."""
    return new_visitor(client)


@pytest.fixture
def endings_finish_here(monkeypatch):
    """An organiser's kill queues the rest of an end (the copy of the work,
    the container's removal) for the worker; here it runs at once, in this
    process. Only that task: refills stay queued, as without a worker."""
    from pool.tasks import finish_retirement_task
    from tests.fakes import instead_of_sending  # after pytest registered tests.fakes as a plugin

    instead_of_sending(monkeypatch, worker.FINISH_RETIREMENT, lambda *args, **kwargs: finish_retirement_task.apply(args, kwargs))


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def docker_images(docker_engine):
    for image in (TINY_IMAGE, JUPYTER_IMAGE, CLASSIC_JUPYTER_IMAGE):
        assert docker_backend.image_exists(image), f"{image} is missing: deploy/test builds it (deploy/images/)"


@pytest.fixture(autouse=True)
def fresh_pool_lookups():
    """Each test rolls the database back under the per-process pool lookups
    (the pools, and the waiting room's outlook of each)."""
    pools.forget_pools()
    yield
    pools.forget_pools()


@pytest.fixture
def no_containers_left_behind(docker_engine):
    yield
    left = docker_backend.list_containers()
    for info in left:
        docker_backend.remove_container(info.backend_id)
    rules = netguard.rules()
    netguard.remove()
    assert not left, f"the test left containers behind: {[c.name for c in left]}"
    assert not rules, f"the test left the network guard's rules behind: {rules}"


@pytest.fixture(scope="session")
def redis_server(log_dir):
    server = stack.RedisServer(log_dir).start()
    use_redis(server.url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def web_port():
    return stack.free_port()


@pytest.fixture(scope="session")
def proxy(log_dir, web_port):
    proc = stack.Proxy(f"http://127.0.0.1:{web_port}", log_dir).start()
    settings.CONFIGPROXY_ENDPOINT = proc.api_url
    settings.CONFIGPROXY_AUTH_TOKEN = proc.token
    yield proc
    proc.stop()


@pytest.fixture
def routes_cleaned(proxy):
    """Deletes, after the test, every route this test run added."""
    yield proxy
    from proxyapi import get_proxy

    client = get_proxy()
    for path in client.list_routes():
        client.delete_route(path)


@pytest.fixture
def clean_pools(transactional_db, routes_cleaned, docker_images):
    """Real containers and routes made by services are removed after the test."""
    yield
    ending.stop_all_containers()


def database_url_for_processes():
    """The test database, as the processes a test starts must reach it."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{quote(db['USER'])}:{quote(db['PASSWORD'])}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def stack_env(proxy, redis_server, web_port, **extra):
    env = {
        "DATABASE_URL": database_url_for_processes(),
        "REDIS_URL": redis_server.url,
        "CONFIGPROXY_ENDPOINT": proxy.api_url,
        "CONFIGPROXY_AUTH_TOKEN": proxy.token,
        "TMPNB_INSTALLATION": settings.TMPNB_INSTALLATION,
        "TMPNB_PORT": str(web_port),
        "TMPNB_HEARTBEAT": "0.5",
        "TMPNB_SPAWN_TIMEOUT": "30",
        "TMPNB_NETWORK_GUARD": "false",
        **proxy.service_env(),
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


class Stack:
    """The web app, worker and beat of one test, behind the session's proxy."""

    def __init__(self, proxy, redis_server, web_port, log_dir):
        self.proxy, self.redis, self.web_port, self.log_dir = proxy, redis_server, web_port, log_dir
        self.processes = []

    @property
    def url(self):
        return self.proxy.public_url

    @property
    def notebook_url(self):
        """The notebooks' origin (they share the proxy's second port)."""
        return self.proxy.notebook_url

    def start(self, web_workers=2, worker=True, beat=True, web_keep_alive=stack.WEB_KEEP_ALIVE, **env):
        celery_app.control.purge()  # tasks an earlier test queued are not this one's
        environment = stack_env(self.proxy, self.redis, self.web_port, **env)
        self.web = stack.WebApp(self.web_port, environment, self.log_dir, workers=web_workers, keep_alive=web_keep_alive)
        self.processes = [self.web]
        if worker:
            self.worker = stack.CeleryWorker(environment, self.log_dir)
            self.processes.append(self.worker)
        if beat:
            self.beat = stack.CeleryBeat(environment, self.log_dir)
            self.processes.append(self.beat)
        # All at once: each spends its first seconds importing Django, which
        # one after another cost every test the sum of them.
        for process in self.processes:
            process.launch()
        for process in self.processes:
            process.wait_ready()
        return self

    def stop(self):
        for process in reversed(self.processes):
            process.stop()
        self.processes = []

    def wait_for_heartbeats(self, count=2, timeout=30):
        """Return once the worker has finished ``count`` more heartbeats than it
        had at the call: whatever a heartbeat would repair or refill is decided
        by then. Two, as the first may have begun before the call."""
        done = len(self.worker.tasks_succeeded(heartbeat_task.name))
        stack.wait_for(lambda: len(self.worker.tasks_succeeded(heartbeat_task.name)) >= done + count, timeout, f"{count} heartbeats of the worker")


@pytest.fixture
def live_stack(clean_pools, proxy, redis_server, web_port, log_dir):
    running = Stack(proxy, redis_server, web_port, log_dir)
    yield running
    running.stop()


@pytest.fixture
def stack_with_own_proxy(live_stack, log_dir, web_port, redis_server, settings):
    """Makes the live stack of this test behind a proxy of its own, started
    with stack.Proxy's options (notebook_domain, tls): the service's origins
    as a deployment with those settings has them."""
    started = []

    def make(**options):
        proxy = stack.Proxy(f"http://127.0.0.1:{web_port}", log_dir, **options).start()
        started.append(proxy)
        settings.CONFIGPROXY_ENDPOINT, settings.CONFIGPROXY_AUTH_TOKEN = proxy.api_url, proxy.token
        settings.TMPNB_NOTEBOOK_DOMAIN = options.get("notebook_domain", "")
        started.append(Stack(proxy, redis_server, web_port, log_dir))
        return started[-1]

    yield make
    for process in reversed(started):
        process.stop()


@pytest.fixture(scope="session")
def swarm_lab(tmp_path_factory, docker_images):
    """A three-node Swarm in network namespaces (tests/swarm.py), with the tiny image on every node."""
    if os.geteuid() != 0 or not (shutil.which("nsenter") and shutil.which("dockerd")):
        pytest.skip("a Swarm lab needs root, nsenter and dockerd")
    archive = tmp_path_factory.mktemp("swarm") / "tiny.tar"
    subprocess.run(["docker", "save", TINY_IMAGE, "-o", str(archive)], check=True, timeout=120)
    lab = SwarmLab(archive)
    try:
        lab.up()
        print(f"\nSwarm lab of 3 nodes up in {lab.setup_seconds:.1f}s")
        yield lab
    finally:
        print(f"\nSwarm lab down in {lab.down():.1f}s")


@pytest.fixture
def on_swarm(swarm_lab):
    """This process drives the lab's Swarm through its manager; list it before
    live_stack, so the pools are stopped while the Swarm is still the backend."""
    with override_settings(
        TMPNB_BACKEND="swarm",
        TMPNB_ROUTE_TO="published",
        DOCKER_HOST=swarm_lab.docker_host(),
        TMPNB_SWARM_NODE_ENGINES=swarm_lab.node_engines(),
        TMPNB_SWARM_ENGINE_CERTS=str(swarm_lab.certs),
    ):
        yield swarm_lab


@pytest.fixture
def swarm_stack(on_swarm, live_stack):
    """The live stack on the Swarm backend: start() passes the lab's settings on."""
    live_stack.start = functools.partial(live_stack.start, **swarm_environment(on_swarm))
    return live_stack


def swarm_environment(lab):
    """What the stack's processes need to run on the lab's Swarm."""
    return {
        "TMPNB_BACKEND": "swarm",
        "DOCKER_HOST": lab.docker_host(),
        "TMPNB_SWARM_NODE_ENGINES": ",".join(f"{node}={engine}" for node, engine in lab.node_engines().items()),
        "TMPNB_SWARM_ENGINE_CERTS": str(lab.certs),
    }


@pytest.fixture(scope="session")
def swarm_jupyter_image(swarm_lab, tmp_path_factory):
    """The JupyterLab image on every node of the lab too (it is never pulled)."""
    archive = tmp_path_factory.mktemp("swarm-jupyter") / "jupyter.tar"
    subprocess.run(["docker", "save", JUPYTER_IMAGE, "-o", str(archive)], check=True, timeout=300)
    swarm_lab.load(archive)
    archive.unlink()
    return JUPYTER_IMAGE


@pytest.fixture
def machine_http_proxy(monkeypatch):
    """A context in which the environment names a machine-wide forward proxy
    that answers nothing (a request sent to it fails), with no exceptions."""

    @contextlib.contextmanager
    def setting():
        with monkeypatch.context() as env:
            for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
                env.setenv(name, "http://127.0.0.1:9")
            for name in ("NO_PROXY", "no_proxy"):
                env.delenv(name, raising=False)
            yield

    return setting
