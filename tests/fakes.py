"""Stand-ins for Docker, the proxy, Redis and the worker's broker at their
boundary, for unit tests of the rules that must interleave with an outside
call (a drain landing while a container starts, a listing taken while a spawn
completes), that count in Redis (the rate limits) or that queue work."""

import dataclasses
import io
import tarfile
import threading
import types
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import pytest
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache

from pool import backends
from pool.backends.base import BackendError, ContainerInfo, NotebookUser, StartedContainer
from pool.services import worker
from proxyapi import Route

NOTEBOOK_FOLDER = "/home/jovyan"  # the notebook user's folder in every fake container


@dataclasses.dataclass(frozen=True)
class HardLink:
    """In FakeBackend.files: another name of the file ``target``."""

    target: str


class FakeBackend(types.ModuleType):
    """A backend module: containers are names in a dict. ``on_start`` runs
    inside start_container (the test's interleaving) and may raise."""

    def __init__(self, port):
        super().__init__("tests_fake_backend")
        self.port = port  # where every started "container" answers
        self.running = {}
        self.removed = []
        self.on_start = None
        self.files = {}  # container name -> {path: bytes}, what archive_out streams
        self.chunk_size = 4096
        self.on_chunk = None  # runs before each chunk streamed (a slow copy)
        self.copied_in = []  # (container name, destination, tar bytes)
        self.disk = {}  # container name -> bytes written, what disk_usage reports
        self.image_files = {}  # image -> {label: value, ...}, with its files under "files"

    def start_container(self, spec):
        if self.on_start:
            self.on_start(spec)
        self.running[spec.name] = ContainerInfo(backend_id=f"id-{spec.name}", name=spec.name, pool=spec.pool, status="running")
        return StartedContainer(backend_id=f"id-{spec.name}", host_ip="127.0.0.1", host_port=self.port)

    def remove_container(self, backend_id):
        name = backend_id.removeprefix("id-")
        self.removed.append(name)
        self.running.pop(name, None)

    def list_containers(self):
        return list(self.running.values())

    def disk_usage(self):
        return {name: size for name, size in self.disk.items() if name in self.running}

    def ensure_network(self, name, *, pool, internal=False, bridge=""):
        pass

    def image_labels(self, image):
        return {key: value for key, value in self.image_files.get(image, {}).items() if key != "files"}

    def copy_out_of_image(self, image, *, pool, path, destination, timeout=None):
        folder = Path(destination) / PurePosixPath(path).name
        for name, data in self.image_files[image]["files"].items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)

    def remove_networks(self):
        pass

    def archive_out(self, backend_id, path, *, timeout):
        """The tar Docker streams for ``path``: its folder, then each file of
        ``self.files[name]`` ({relative path: bytes or a HardLink}) owned by
        1000:100. A name may hold bytes that are not UTF-8, as tarfile reads
        them (surrogate escapes: "caf\udce9" for b"caf\xe9")."""
        files = self.files.get(backend_id.removeprefix("id-"))
        if files is None:
            raise BackendError(f"no such container: {backend_id}")
        buffer = io.BytesIO()
        folder = PurePosixPath(path).name or "work"
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.addfile(_member(folder, tarfile.DIRTYPE, 0))
            for name, data in files.items():
                if isinstance(data, HardLink):  # as Docker sends a second name of one file: no data
                    link = _member(f"{folder}/{name}", tarfile.LNKTYPE, 0)
                    link.linkname = f"{folder}/{data.target}"
                    tar.addfile(link)
                else:
                    tar.addfile(_member(f"{folder}/{name}", tarfile.REGTYPE, len(data)), io.BytesIO(data))
        data = buffer.getvalue()
        for start in range(0, len(data), self.chunk_size):
            if self.on_chunk:
                self.on_chunk()
            yield data[start : start + self.chunk_size]

    def copy_in(self, backend_id, *, tar_path, destination):
        with open(tar_path, "rb") as tar:
            self.copied_in.append((backend_id.removeprefix("id-"), destination, tar.read()))

    def notebook_user(self, backend_id):
        return NotebookUser(uid=1000, gid=100, folder=NOTEBOOK_FOLDER)

    def path_exists(self, backend_id, path):
        """In ``files`` (the notebook folder's) or put in with copy_in."""
        name = backend_id.removeprefix("id-")
        return path in self.paths_in(name)

    def paths_in(self, name):
        """Every path the container ``name`` holds: its ``files`` and what copy_in put in, with their folders."""
        paths = set()
        for relative in self.files.get(name, {}):
            paths |= _with_folders(f"{NOTEBOOK_FOLDER}/{relative}")
        for container, destination, data in self.copied_in:
            if container == name:
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    for member in tar:
                        paths |= _with_folders(f"{destination}/{member.name}")
        return paths


def _with_folders(path):
    path = PurePosixPath(path)
    return {str(path), *(str(parent) for parent in path.parents if len(parent.parts) > len(PurePosixPath(NOTEBOOK_FOLDER).parts))}


def _member(name, kind, size):
    member = tarfile.TarInfo(name)
    member.type, member.size, member.uid, member.gid, member.mtime = kind, size, 1000, 100, 1_700_000_000
    member.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return member


class FakeSwarm:
    """A Swarm manager's API at the calls pool/backends/swarm.py lists and
    removes with, answering in Docker's shapes: nodes by hostname, and one
    running task per service."""

    def __init__(self):
        self.node_by_name = {}
        self.service_list = []
        self.task_list = []

    def set_node(self, hostname, state="ready", *, since=None):
        """A node in ``state`` since ``since`` (now by default), stamped as
        Swarm stamps UpdatedAt: nanoseconds, in UTC."""
        stamp = (since or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
        self.node_by_name[hostname] = {
            "ID": f"node-{hostname}",
            "UpdatedAt": stamp,
            "Status": {"State": state, "Addr": "10.99.0.1"},
            "Description": {"Hostname": hostname},
        }

    def remove_node(self, hostname):
        del self.node_by_name[hostname]

    def run_service(self, name, *, pool, node):
        service_id = f"id-{name}"
        labels = {"tmpnb.installation": settings.TMPNB_INSTALLATION, "tmpnb.pool": pool}
        self.service_list.append({"ID": service_id, "Spec": {"Name": name, "Labels": labels}})
        status = {
            "State": "running",
            "PortStatus": {"Ports": [{"PublishedPort": 30000 + len(self.task_list)}]},
            "ContainerStatus": {"ContainerID": f"container-{name}"},
        }
        self.task_list.append({"ServiceID": service_id, "NodeID": f"node-{node}", "Status": status, "Version": {"Index": 1}})

    def services(self, filters=None):
        return list(self.service_list)

    def tasks(self, filters=None):
        return list(self.task_list)

    def nodes(self):
        return list(self.node_by_name.values())

    def inspect_node(self, node_id):
        return next(node for node in self.node_by_name.values() if node["ID"] == node_id)

    def remove_service(self, service):
        """By id or by name, as Docker takes either."""
        gone = {s["ID"] for s in self.service_list if service in (s["ID"], s["Spec"]["Name"])}
        self.service_list = [s for s in self.service_list if s["ID"] not in gone]
        self.task_list = [t for t in self.task_list if t["ServiceID"] not in gone]


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
        self.routes[path] = Route(path=path, target=target, last_activity=None, data=data)

    def delete_route(self, path):
        self.routes.pop(path, None)

    def list_routes(self, inactive_since=None):
        return dict(self.routes)

    def get_route(self, path):
        return self.routes.get(path)

    def answers(self):
        return True


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
    for module in ("pool.services.ending", "pool.services.routes", "pool.services.upkeep"):
        monkeypatch.setattr(f"{module}.get_proxy", lambda: fake)
    return fake


def instead_of_sending(monkeypatch, task, call):
    """The services' sends of ``task`` to the worker call ``call`` with the
    task's arguments instead; other tasks are sent as before."""
    send = worker.send

    def send_or_call(name, *args, countdown=None, **kwargs):
        if name == task:
            call(*args, **kwargs)
        else:
            send(name, *args, countdown=countdown, **kwargs)

    monkeypatch.setattr(worker, "send", send_or_call)


@pytest.fixture
def fake_swarm(monkeypatch, settings):
    """The swarm backend, talking to a FakeSwarm instead of a manager."""
    fake = FakeSwarm()
    settings.TMPNB_BACKEND = "swarm"
    monkeypatch.setattr("pool.backends.swarm.client", lambda: types.SimpleNamespace(api=fake))
    return fake
